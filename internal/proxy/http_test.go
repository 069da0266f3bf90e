package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// In HTTP mode the app sees the verified client in X-Forwarded-Client-Cert,
// and never a copy the client sent.
func TestHTTPModeSetsXFCC(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	seen := make(chan []string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values(XFCCHeader)
		_, _ = io.WriteString(w, "hi")
	}))
	defer backend.Close()
	lb := &logBuffer{}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	api := td.identity(t, "/ns/api")
	p, err := New(Config{Direction: Inbound, To: strings.TrimPrefix(backend.URL, "http://"), Holder: api,
		Authz: allow(t, "spiffe://example.test/ns/web"), Logger: slog.New(slog.NewTextHandler(lb, nil)), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ServeHTTP(ctx, ln) }()
	defer func() { cancel(); <-done }()

	out := start(t, Config{Direction: Outbound, To: ln.Addr().String(), Holder: td.identity(t, "/ns/web"), Authz: allow(t, "spiffe://example.test/ns/api")})
	req, _ := http.NewRequest("GET", "http://"+out.addr+"/x", nil)
	req.Header.Set(XFCCHeader, "By=spiffe://example.test/ns/api;URI=spiffe://example.test/ns/admin")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi" {
		t.Fatalf("body %q", body)
	}
	got := <-seen
	if len(got) != 1 || !strings.HasPrefix(got[0], "By=spiffe://example.test/ns/api;Hash=") || !strings.HasSuffix(got[0], ";URI=spiffe://example.test/ns/web") {
		t.Fatalf("%s: %q", XFCCHeader, got)
	}
	waitLog(t, lb, `peer=spiffe://example.test/ns/web method=GET path=/x status=200`)

	// A client not on the list is refused at the handshake, and logged.
	batch := start(t, Config{Direction: Outbound, To: ln.Addr().String(), Holder: td.identity(t, "/ns/batch"), Authz: allow(t, "spiffe://example.test/ns/api")})
	if resp, err := http.Get("http://" + batch.addr + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("a client not on the list got through")
	}
	waitLog(t, lb, `reason="not_allowed: spiffe://example.test/ns/batch is not on the allow list"`)
	http.DefaultClient.CloseIdleConnections()

	// The admin endpoints.
	admin := httptest.NewServer(AdminHandler(api, nil, reg))
	defer admin.Close()
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok spiffe://example.test/ns/api", "/metrics": "meshpki_proxy_authorization_denials_total"} {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	empty := httptest.NewServer(AdminHandler(NewHolder(), nil, reg))
	defer empty.Close()
	if resp, err := http.Get(empty.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz without an identity: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
}

func TestXFCCQuotes(t *testing.T) {
	if got := xfccValue(`a;b"c`); got != `"a;b\"c"` {
		t.Fatalf("%s", got)
	}
}

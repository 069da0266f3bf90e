package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// Run: files as the identity, the admin endpoints, a request through, and
// a clean stop.
func TestRun(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	dir := t.TempDir()
	chain, key := td.svid(t, "/ns/api", "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	f := &Files{Cert: filepath.Join(dir, "svid.pem"), Key: filepath.Join(dir, "svid.key"), Bundle: filepath.Join(dir, "bundle.pem")}
	writePEM(t, f.Cert, "CERTIFICATE", chain[0].Raw)
	writePEM(t, f.Bundle, "CERTIFICATE", td.root.Raw)
	k, _ := keys.MarshalPrivateKeyPEM(key)
	if err := os.WriteFile(f.Key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	backend := app(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunConfig{
			Config: Config{Direction: Inbound, To: strings.TrimPrefix(backend.URL, "http://"), Authz: allow(t, "spiffe://example.test"),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			Listen: "127.0.0.1:0", HTTP: true, Files: f, AdminListen: "127.0.0.1:0",
			Ready: func(p, a net.Addr) { ready <- [2]net.Addr{p, a} },
		})
	}()
	var addrs [2]net.Addr
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	waitFor(t, "readyz", func() bool {
		resp, err := http.Get("http://" + addrs[1].String() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	out := start(t, Config{Direction: Outbound, To: addrs[0].String(), Holder: td.identity(t, "/ns/web"), Authz: allow(t, "spiffe://example.test/ns/api")})
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Get("http://" + out.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	if string(b) != "hello from the app" {
		t.Fatalf("body %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Bad configurations end Run at once with an error.
	for _, bad := range []RunConfig{
		{Config: Config{Direction: Outbound, To: "a:1", Authz: allow(t, "spiffe://a")}, Listen: "127.0.0.1:0", HTTP: true, Files: f},
		{Config: Config{Direction: Inbound, To: "a:1", Authz: allow(t, "spiffe://a")}, Listen: "127.0.0.1:0", Files: &Files{Cert: "/nonexistent", Key: f.Key, Bundle: f.Bundle}},
		{Config: Config{Direction: Inbound, To: "a:1", Authz: allow(t, "spiffe://a")}, Listen: "not an address", Files: f},
	} {
		bad.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if err := Run(context.Background(), bad); err == nil {
			t.Errorf("Run(%+v) succeeded", bad)
		}
	}
}

package proxy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects a proxy's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// running is a proxy serving on loopback until the test ends.
type running struct {
	p    *Proxy
	addr string
	log  *logBuffer
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	lb := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(lb, nil))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &running{p: p, addr: ln.Addr().String(), log: lb}
}

func allow(t *testing.T, entries ...string) Authorizer {
	t.Helper()
	a, err := ParseAuthorizer(entries)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// app is a plain HTTP app.
func app(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the app")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// curl with an SVID through an inbound proxy to a real HTTP app; refusals
// of another trust domain, an expired certificate and an identity not on
// the allow list, each with a log line that says why.
func TestInboundWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	td := newTrustDomain(t, "example.test")
	other := newTrustDomain(t, "other.test")
	// The server's SVID also names api.test, so curl can check the host.
	chain, key := td.svid(t, "/ns/api", "api.test", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	id, err := NewIdentity(chain, key, map[spiffeid.TrustDomain][]*x509.Certificate{td.td: {td.root}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder()
	h.Store(id)
	backend := app(t)
	in := start(t, Config{Direction: Inbound, To: strings.TrimPrefix(backend.URL, "http://"), Holder: h,
		Authz: allow(t, "spiffe://example.test/ns/web")})
	_, port, _ := net.SplitHostPort(in.addr)

	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "root.pem"), "CERTIFICATE", td.root.Raw)
	client := func(name string, d *trustDomain, path string, notBefore, notAfter time.Time) (string, string) {
		chain, key := d.svid(t, path, "", notBefore, notAfter)
		certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writePEM(t, certFile, "CERTIFICATE", chain[0].Raw)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", der)
		return certFile, keyFile
	}
	run := func(cert, key string) (string, error) {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", filepath.Join(dir, "root.pem"), "--cert", cert, "--key", key,
			"--resolve", "api.test:"+port+":127.0.0.1", "https://api.test:"+port+"/").CombinedOutput()
		return string(out), err
	}
	now := time.Now()
	webCert, webKey := client("web", td, "/ns/web", now.Add(-time.Minute), now.Add(time.Hour))
	if out, err := run(webCert, webKey); err != nil || out != "hello from the app" {
		t.Fatalf("curl as web: %v %s", err, out)
	}
	refused := []struct {
		name, reason string
		d            *trustDomain
		path         string
		from, to     time.Time
	}{
		{"other", "untrusted", other, "/ns/web", now.Add(-time.Minute), now.Add(time.Hour)},
		{"expired", "expired", td, "/ns/web", now.Add(-2 * time.Hour), now.Add(-time.Hour)},
		{"batch", "not_allowed", td, "/ns/batch", now.Add(-time.Minute), now.Add(time.Hour)},
	}
	for _, c := range refused {
		cert, key := client(c.name, c.d, c.path, c.from, c.to)
		if out, err := run(cert, key); err == nil {
			t.Errorf("%s: curl succeeded: %s", c.name, out)
		}
	}
	// Every line is written once the connection ends.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(in.log.String(), "result=refused") < len(refused) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := in.log.String()
	for _, c := range refused {
		if !strings.Contains(logs, "reason=\""+c.reason+":") {
			t.Errorf("no log line with reason %s:\n%s", c.reason, logs)
		}
	}
	if !strings.Contains(logs, "peer=spiffe://example.test/ns/web") || !strings.Contains(logs, "result=ok") {
		t.Errorf("no access line for the allowed client:\n%s", logs)
	}
}

// mesh is an app behind an inbound proxy, and an outbound proxy that
// reaches it: the client speaks plain HTTP to the outbound proxy.
type mesh struct {
	out, in *running
	web     *Holder
	td      *trustDomain
}

func newMesh(t *testing.T, cfgIn, cfgOut Config) *mesh {
	t.Helper()
	td := newTrustDomain(t, "example.test")
	m := &mesh{td: td, web: td.identity(t, "/ns/web")}
	backend := app(t)
	cfgIn.Direction, cfgIn.To, cfgIn.Holder, cfgIn.Authz = Inbound, strings.TrimPrefix(backend.URL, "http://"), td.identity(t, "/ns/api"), allow(t, "spiffe://example.test/ns/web")
	m.in = start(t, cfgIn)
	cfgOut.Direction, cfgOut.To, cfgOut.Holder, cfgOut.Authz = Outbound, m.in.addr, m.web, allow(t, "spiffe://example.test/ns/api")
	m.out = start(t, cfgOut)
	return m
}

// Outbound → inbound across two proxies: both identities verified, the
// apps unmodified.
func TestOutboundToInbound(t *testing.T) {
	m := newMesh(t, Config{}, Config{})
	resp, err := http.Get("http://" + m.out.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the app" {
		t.Fatalf("got %q", body)
	}
	http.DefaultClient.CloseIdleConnections()
	waitLog(t, m.in.log, "peer=spiffe://example.test/ns/web")
	waitLog(t, m.out.log, "peer=spiffe://example.test/ns/api")

	// An outbound proxy expecting someone else refuses the server.
	wrong := start(t, Config{Direction: Outbound, To: m.in.addr, Holder: m.web, Authz: allow(t, "spiffe://example.test/ns/db")})
	if resp, err := http.Get("http://" + wrong.addr + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("an unexpected server was accepted")
	}
	waitLog(t, wrong.log, "not_allowed: spiffe://example.test/ns/api is not on the allow list")
}

func waitLog(t *testing.T, l *logBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", want, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SVIDs rotate every 50ms on both sides while 10,000 requests run through
// the two proxies: none fails, and a connection opened before the first
// rotation still works after the last.
func TestRotationUnderLoad(t *testing.T) {
	m := newMesh(t, Config{}, Config{})
	apiHolder := m.in.p.cfg.Holder
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	cl := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	get := func(c *http.Client) error {
		resp, err := c.Get("http://" + m.out.addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "hello from the app" {
			err = fmt.Errorf("body %q", b)
		}
		return err
	}
	// The long-lived connection: one keep-alive connection of its own.
	early := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer early.Transport.(*http.Transport).CloseIdleConnections()
	if err := get(early); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var rotated sync.WaitGroup
	rotated.Add(1)
	go func() {
		defer rotated.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			m.web.Store(m.td.identity(t, "/ns/web").Load())
			apiHolder.Store(m.td.identity(t, "/ns/api").Load())
		}
	}()
	const total, workers = 10_000, 16
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				if err := get(cl); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rotated.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed: %v", failed.Load(), total, firstErr.Load())
	}
	if m.web.Rotations() < 3 {
		t.Fatalf("only %d rotations during the load", m.web.Rotations())
	}
	if err := get(early); err != nil {
		t.Fatalf("the connection opened before the rotations: %v", err)
	}
}

// A proxied connection outlives every timeout while bytes move, and is
// closed once idle for longer than the idle timeout.
func TestLongLivedConnection(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	short := Config{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, DialTimeout: 200 * time.Millisecond}
	in := short
	in.Direction, in.To, in.Holder, in.Authz = Inbound, echo.Addr().String(), td.identity(t, "/ns/echo"), allow(t, "spiffe://example.test")
	inbound := start(t, in)
	out := short
	out.Direction, out.To, out.Holder, out.Authz = Outbound, inbound.addr, td.identity(t, "/ns/web"), allow(t, "spiffe://example.test/ns/echo")
	outbound := start(t, out)

	c, err := net.Dial("tcp", outbound.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	// 20 round trips 100ms apart: 2s, far past every timeout.
	for i := range 20 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Idle: closed after the idle timeout.
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
}

// Garbage instead of a ClientHello, a client that stalls mid-handshake, an
// app that is down: each ends with a clear log line, nothing hangs.
func TestBadInput(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	in := start(t, Config{Direction: Inbound, To: downAddr, Holder: td.identity(t, "/ns/api"), Authz: allow(t, "spiffe://example.test"),
		HandshakeTimeout: 300 * time.Millisecond})

	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.ReadAll(c)
	c.Close()
	waitLog(t, in.log, "result=refused reason=\"handshake:")

	stall, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = stall.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.ReadAll(stall)
	stall.Close()
	waitLog(t, in.log, "reason=\"timeout:")

	out := start(t, Config{Direction: Outbound, To: in.addr, Holder: td.identity(t, "/ns/web"), Authz: allow(t, "spiffe://example.test/ns/api")})
	resp, err := http.Get("http://" + out.addr + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request reached an app that is down")
	}
	waitLog(t, in.log, "reason=\"app unreachable:")

	for _, bad := range []Config{
		{Direction: Inbound, To: downAddr, Holder: NewHolder()},
		{Direction: Outbound, To: "unix:/tmp/x", Holder: NewHolder(), Authz: allow(t, "spiffe://a")},
		{Direction: "sideways", To: downAddr, Holder: NewHolder(), Authz: allow(t, "spiffe://a")},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// Serve drains: a connection open when its context ends may finish.
func TestDrain(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "done")
	}))
	defer slow.Close()
	p, err := New(Config{Direction: Inbound, To: strings.TrimPrefix(slow.URL, "http://"), Holder: td.identity(t, "/ns/api"),
		Authz: allow(t, "spiffe://example.test"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	outbound := start(t, Config{Direction: Outbound, To: ln.Addr().String(), Holder: td.identity(t, "/ns/web"), Authz: allow(t, "spiffe://example.test/ns/api")})
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + outbound.addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	for p.Active() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if body := <-got; body != "done" {
		t.Fatalf("request open at shutdown: %q", body)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

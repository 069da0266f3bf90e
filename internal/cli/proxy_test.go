package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/proxy"
	"github.com/meshpki/meshpki/internal/servertest"
)

// meshpki proxy refuses what it cannot run with one line and exit 2.
func TestProxyUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "inbound", "--to", "127.0.0.1:1"}, "--listen and --to are required"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1"}, "--allow is required"},
		{[]string{"proxy", "outbound", "--listen", ":0", "--to", "a:1"}, "--expect is required"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "web"}, "--allow \"web\" is not a SPIFFE ID"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--cert", "a.pem"}, "go together"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--cert", "a", "--key", "b", "--bundle", "c", "--workload-api", "unix:///x"}, "not both"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--handshake-timeout", "0s"}, "timeouts must be positive"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--crl", "ftp://ca/crl"}, "is not an http:// or https:// URL"},
		{[]string{"proxy", "inbound", "--listen", ":0", "--to", "127.0.0.1:1", "--allow", "spiffe://td", "--crl", "http://ca/crl", "--crl-refresh", "0s"}, "--crl-refresh must be positive"},
	} {
		code, _, errOut := invokeCLI(t, "", c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line saying %q", c.args, code, errOut, c.want)
		}
	}
}

// An inbound proxy with --crl refuses a client once meshpki cert revoke has
// put its certificate on the server's CRL, within the refresh bound, with a
// log line that says "revoked"; other clients go on.
func TestProxyRefusesRevokedClient(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{HTTPListen: "127.0.0.1:0"})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "mesh", "--allow-uri", "spiffe://test.internal/ns/*"}, data...)...)
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	issue := func(name string) (certFile, keyFile string, cert tls.Certificate) {
		t.Helper()
		id := "spiffe://test.internal/ns/" + name
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", id, "--provisioner", "mesh"}, data...)...)
		out := filepath.Join(t.TempDir(), name)
		mustRun(t, "cert", "issue", name, "--san", id, "--token", lastLine(tok), "--ca-url", in.URL, "--root", root, "--out", out, "--ttl", "1h")
		certFile, keyFile = filepath.Join(out, name+".crt"), filepath.Join(out, name+".key")
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, c
	}
	serverCert, serverKey, _ := issue("api")
	_, _, good := issue("web")
	_, _, bad := issue("batch")

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	authz, err := proxy.ParseAuthorizer([]string{"spiffe://test.internal/ns/*"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	ready := make(chan [2]net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- proxy.Run(ctx, proxy.RunConfig{
			Config: proxy.Config{Direction: proxy.Inbound, To: backend.Addr().String(), Authz: authz,
				Logger: slog.New(slog.NewJSONHandler(logs, nil))},
			Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
			Files: &proxy.Files{Cert: serverCert, Key: serverKey, Bundle: root},
			CRLs:  []string{in.PlainURL + "/crl/default", in.PlainURL + "/crl/root"}, CRLRefresh: 100 * time.Millisecond,
			Ready: func(p, a net.Addr) { ready <- [2]net.Addr{p, a} },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	}()
	addrs := <-ready
	waitFor(t, func() (struct{}, bool) {
		r := httpGet(t, http.DefaultClient, "http://"+addrs[1].String()+"/readyz", nil)
		return struct{}{}, r.status == 200
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustReadFile(t, root))
	echo := func(c tls.Certificate) error {
		conn, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: pool,
			InsecureSkipVerify: true}) //nolint:gosec // the proxy's SVID names no host
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	for _, c := range []tls.Certificate{good, bad} {
		if err := echo(c); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	badLeaf, _ := x509.ParseCertificate(bad.Certificate[0])
	mustRun(t, append([]string{"cert", "revoke", badLeaf.SerialNumber.Text(16), "--reason", "keyCompromise"}, data...)...)
	revoked := time.Now()
	waitFor(t, func() (struct{}, bool) { return struct{}{}, echo(bad) != nil })
	t.Logf("refused %s after the revocation (CRL rebuilt, then fetched every 100ms)", time.Since(revoked).Round(time.Millisecond))
	if err := echo(good); err != nil {
		t.Fatalf("another client after the revocation: %v", err)
	}
	waitFor(t, func() (struct{}, bool) {
		return struct{}{}, strings.Contains(logs.String(), `"reason":"revoked: spiffe://test.internal/ns/batch: certificate `) &&
			strings.Contains(logs.String(), ": keyCompromise")
	})
}

// lockedBuffer is a bytes.Buffer safe for a logger and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

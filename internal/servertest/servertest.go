// Package servertest starts a real meshpki CA server for tests: a fresh data
// directory, the real store (SQLite in the directory, or a fresh PostgreSQL
// schema), real HTTPS on a loopback port, and clients that trust its root and
// hold its admin credential.
package servertest

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/store/pgtest"
)

// Password is the CA passphrase of every test server.
const Password = "test-passphrase-not-secret"

// Options tune Start. The zero value gives SQLite in a temp dir.
type Options struct {
	DataDir   string // reuse an existing data dir (e.g. a second replica)
	StoreURL  string // "" for SQLite in DataDir
	PublicURL string // shared by replicas
	Clock     func() time.Time
	// X509PoPRoots enables x509pop node attestation with these CAs.
	X509PoPRoots *x509.CertPool
	// OperatorCAs are other CAs whose certificates authenticate enrolled
	// operators.
	OperatorCAs []*x509.Certificate
	// Listen is the address to bind ("" for a random loopback port); a
	// test restarting a server on the same port sets it.
	Listen string
	// ACMEValidation points ACME challenge validation at the test's own
	// DNS and challenge servers.
	ACMEValidation validation.Config
	// Timeouts, if set, replace the server's HTTP timeouts (a test of a
	// long-lived stream sets them short).
	Timeouts server.Timeouts
	// Keystore, if set, replaces the file keystore in DIR/ca/keys.
	Keystore func(dataDir string, passphrase []byte) (keys.Keystore, error)
	// HTTPListen, if set ("127.0.0.1:0"), starts the plain-HTTP listener;
	// Instance.PlainURL is its URL.
	HTTPListen string
	// AllowEgress lets scheduled scans reach these networks (a test's
	// endpoints on loopback); scans look for due schedules every 50ms.
	AllowEgress []netip.Prefix
	// ScanTick and AlertEvery replace the leader's short test polls
	// (50ms, 200ms), to show what wakes it sooner.
	ScanTick, AlertEvery time.Duration
}

// Instance is a running server.
type Instance struct {
	Server *server.Server
	// URL is where the test reaches the server (https://127.0.0.1:PORT);
	// the token audience is Server.URL()+"/v1/sign", which differs when
	// Options.PublicURL is set.
	URL string
	// PlainURL is the plain-HTTP listener's URL (Options.HTTPListen).
	PlainURL     string
	DataDir      string
	PasswordFile string
	Roots        *x509.CertPool
	RootPEM      []byte
	AdminCert    tls.Certificate
	// Admin is an HTTP client presenting the admin credential.
	Admin *http.Client
	// Anonymous is an HTTP client with no client certificate.
	Anonymous *http.Client
	stop      context.CancelFunc
	done      chan error
}

// Start runs a server until the test ends.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	dir := o.DataDir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "data")
	}
	pwFile := filepath.Join(filepath.Dir(dir), "password")
	if err := os.WriteFile(pwFile, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	srv, err := server.Start(ctx, server.Options{
		DataDir:      dir,
		Listen:       listen,
		StoreURL:     o.StoreURL,
		PublicURL:    o.PublicURL,
		PasswordFile: pwFile,
		Init:         ca.InitOptions{Name: "Test", TrustDomain: "test.internal"},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:        o.Clock,
		Ready:        func(a net.Addr) { ready <- a },
		// Pick up CLI-made rotations quickly in tests.
		MaintainEvery:    200 * time.Millisecond,
		LeaderCheckEvery: 100 * time.Millisecond,
		ACMEValidation:   o.ACMEValidation,
		X509PoPRoots:     o.X509PoPRoots,
		OperatorCAs:      o.OperatorCAs,
		Timeouts:         o.Timeouts,
		Keystore:         o.Keystore,
		AllowEgress:      o.AllowEgress,
		HTTPListen:       o.HTTPListen,
		ScanTick:         cmp.Or(o.ScanTick, 50*time.Millisecond),
		AlertEvery:       cmp.Or(o.AlertEvery, 200*time.Millisecond),
		DeliverTick:      100 * time.Millisecond,
		AlertBackoff:     func(int) time.Duration { return 200 * time.Millisecond },
	})
	if err != nil {
		cancel()
		t.Fatalf("servertest: start: %v", err)
	}
	in := &Instance{Server: srv, URL: "https://" + srv.Addr().String(), DataDir: dir, PasswordFile: pwFile, stop: cancel, done: make(chan error, 1)}
	if a := srv.PlainAddr(); a != nil {
		in.PlainURL = "http://" + a.String()
	}
	go func() { in.done <- srv.Serve(ctx) }()
	select {
	case <-ready:
	case err := <-in.done:
		cancel()
		t.Fatalf("servertest: serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("servertest: server did not start in 30s")
	}
	t.Cleanup(in.Stop)

	in.RootPEM, err = os.ReadFile(filepath.Join(dir, server.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	in.Roots = x509.NewCertPool()
	in.Roots.AppendCertsFromPEM(in.RootPEM)
	in.AdminCert = LoadCredential(t, filepath.Join(dir, server.AdminCertFile), filepath.Join(dir, server.AdminKeyFile), []byte(Password))
	in.Admin = in.Client(&in.AdminCert)
	in.Anonymous = in.Client(nil)
	return in
}

// Stop stops the server and waits for it (idempotent).
func (in *Instance) Stop() {
	if in.stop == nil {
		return
	}
	in.stop()
	in.stop = nil
	select {
	case <-in.done:
	case <-time.After(15 * time.Second):
	}
}

// Client returns an HTTP client trusting the test root, presenting cert if
// not nil.
func (in *Instance) Client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: in.Roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}}
}

// LoadCredential reads a certificate chain and a (possibly encrypted) key.
func LoadCredential(t testing.TB, certPath, keyPath string, pass []byte) tls.Certificate {
	t.Helper()
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.ParsePrivateKeyPEM(keyPEM, pass)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	out := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// PostgresURL returns the test PostgreSQL URL with a fresh schema that is
// dropped when the test ends (pgtest.URL).
func PostgresURL(t testing.TB) string {
	t.Helper()
	return pgtest.URL(t)
}

// AttestNode attests a node with a one-time join token for spiffeID and
// returns a node API client presenting its node SVID, closed at cleanup.
func (in *Instance) AttestNode(tb testing.TB, spiffeID string) *nodeapi.Client {
	tb.Helper()
	ctx := context.Background()
	g, err := in.Server.Registration().CreateJoinToken(ctx, spiffeID, 0, "test")
	if err != nil {
		tb.Fatal(err)
	}
	anon, err := nodeapi.Dial(in.URL, in.Roots, func() *tls.Certificate { return nil })
	if err != nil {
		tb.Fatal(err)
	}
	defer anon.Close()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: csr})
	if err != nil {
		tb.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: resp.Chain, PrivateKey: k}
	c, err := nodeapi.Dial(in.URL, in.Roots, func() *tls.Certificate { return cert })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

package notify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testCA issues certificates for the test's TLS servers and scanned chains.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notify test root"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

var serials atomic.Int64

// leaf issues a certificate for name valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, name string, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100 + serials.Add(1)), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.DNSNames, tmpl.IPAddresses = nil, []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// env is a store, an inventory, an evaluator and a deliverer on one clock.
type env struct {
	dir       string
	st        *sqlstore.Store
	clock     *clock
	ca        *testCA
	inv       *monitor.Inventory
	eval      *Evaluator
	deliver   *Deliverer
	svc       *Service
	sealer    *keys.Sealer
	loopback  netguard.Guard
	caCerts   []*x509.Certificate
	caCertsMu sync.Mutex
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{dir: dir, st: st, clock: &clock{t: time.Now().Truncate(time.Second)}, ca: newTestCA(t)}
	e.sealer, err = keys.NewSealer(keys.SecretMAC(testSecret), "meshpki alert channel seal v1")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.cert)
	e.inv = &monitor.Inventory{Store: st, Policy: &monitor.Policy{Roots: roots, Now: e.clock.now}}
	e.loopback = netguard.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	sender := &Sender{Guard: e.loopback, ExternalURL: "https://ca.test", Timeout: 5 * time.Second}
	e.eval = &Evaluator{Store: st, Inventory: e.inv, Clock: e.clock.now, CA: func() []*x509.Certificate {
		e.caCertsMu.Lock()
		defer e.caCertsMu.Unlock()
		return e.caCerts
	}}
	e.deliver = &Deliverer{Store: st, Sender: sender, Sealer: e.sealer, Clock: e.clock.now}
	e.svc = &Service{Store: st, Sealer: e.sealer, Sender: sender, Clock: e.clock.now}
	return e
}

// see records a scan that saw cert at location now.
func (e *env) see(t *testing.T, location string, cert *x509.Certificate) {
	t.Helper()
	r := e.inv.Policy.Result(location, location, monitor.KindEndpoint, []*x509.Certificate{cert, e.ca.cert}, monitor.Source{Endpoint: true, VerifyName: cert.DNSNames[0]})
	if _, err := e.inv.Record(context.Background(), e.clock.now(), []string{location}, time.Hour, map[string]string{"team": "web"}, []monitor.Result{r}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) evaluate(t *testing.T) Outcome {
	t.Helper()
	o, err := e.eval.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// receiver is a webhook receiver that records what it is sent and can be
// made to fail.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  [][]byte
	keys []string // the Idempotency-Key of every request, down or not
	down atomic.Bool
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
		r.mu.Unlock()
		if r.down.Load() {
			http.Error(w, "receiver down for maintenance", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(req.Body)
		if req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "not JSON", http.StatusUnsupportedMediaType)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// messages decodes what the receiver got as Alertmanager bodies and
// forgets it.
func (r *receiver) messages(t *testing.T) []amMessage {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []amMessage
	for _, b := range r.got {
		var m amMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("receiver got %s: %v", b, err)
		}
		out = append(out, m)
	}
	r.got = nil
	return out
}

func (r *receiver) idempotencyKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

func (r *receiver) raw() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// mailServer is a real SMTP server (go-smtp) that requires STARTTLS before
// AUTH PLAIN and keeps what it receives.
type mailServer struct {
	addr string
	mu   sync.Mutex
	mail []string
	auth []string
}

type mailSession struct {
	s    *mailServer
	from string
	to   []string
}

func (m *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (m *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "alerts" || pass != "s3cret-pass" {
			return errors.New("bad credentials")
		}
		m.s.mu.Lock()
		m.s.auth = append(m.s.auth, user)
		m.s.mu.Unlock()
		return nil
	}), nil
}
func (m *mailSession) Reset()        {}
func (m *mailSession) Logout() error { return nil }
func (m *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	m.from = from
	return nil
}
func (m *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.to = append(m.to, to)
	return nil
}
func (m *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.s.mu.Lock()
	m.s.mail = append(m.s.mail, string(b))
	m.s.mu.Unlock()
	return nil
}

type mailBackend struct{ s *mailServer }

func (b mailBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{s: b.s}, nil }

// newMailServer starts an SMTP server; withTLS offers STARTTLS with a
// certificate for 127.0.0.1 from ca.
func newMailServer(t *testing.T, ca *testCA, withTLS bool) *mailServer {
	t.Helper()
	ms := &mailServer{}
	srv := smtp.NewServer(mailBackend{ms})
	srv.Domain = "mail.test"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	if withTLS {
		cert, key := ca.leaf(t, "127.0.0.1", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ms
}

func (ms *mailServer) received() []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]string(nil), ms.mail...)
}

var _ store.Alerts = (*sqlstore.Store)(nil)

func newSealerForBench() (*keys.Sealer, error) {
	return keys.NewSealer(keys.SecretMAC(testSecret), "meshpki alert channel seal v1")
}

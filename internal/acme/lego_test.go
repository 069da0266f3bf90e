package acme_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"

	"github.com/meshpki/meshpki/internal/acme/acmetest"
	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// env is a real meshpki server with an ACME provisioner "acme" that allows
// *.test names and 127.0.0.1, and the DNS and challenge servers its
// validation is pointed at.
type env struct {
	in    *servertest.Instance
	admin *client.Client
	dns   *acmetest.DNS
	h01   *acmetest.HTTP01
	alpn  *acmetest.TLSALPN01
}

func newEnv(t testing.TB, storeURL string) *env {
	t.Helper()
	// lego looks up CNAMEs of _acme-challenge names with the system
	// resolver; there is none to ask here.
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	e := &env{dns: acmetest.StartDNS(t), h01: acmetest.StartHTTP01(t), alpn: acmetest.StartTLSALPN01(t)}
	e.in = servertest.Start(t, servertest.Options{
		StoreURL: storeURL,
		ACMEValidation: validation.Config{
			HTTPPort: e.h01.Port,
			TLSPort:  e.alpn.Port,
			Resolver: e.dns.Addr,
			Timeout:  5 * time.Second,
		},
	})
	var err error
	e.admin, err = newAdmin(e.in)
	if err != nil {
		t.Fatal(err)
	}
	e.addProvisioner(t, "acme", false)
	return e
}

func newAdmin(in *servertest.Instance) (*client.Client, error) {
	return client.New(client.Config{URL: in.URL, RootsPEM: in.RootPEM, Certificate: &in.AdminCert})
}

// readLeaf reads the first certificate of a PEM file.
func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := certcrypto.ParsePEMBundle(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func (e *env) addProvisioner(t testing.TB, name string, requireEAB bool) {
	t.Helper()
	_, err := e.admin.CreateProvisioner(context.Background(), client.Provisioner{
		Name: name, Type: "acme", RequireEAB: requireEAB,
		Policy: policy.Policy{AllowDNS: []string{".test"}, DenyDNS: []string{"forbidden.test"}, AllowIP: []string{"127.0.0.1/32"}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) directory(prov string) string { return e.in.URL + "/acme/" + prov + "/directory" }

// user is a lego account holder.
type user struct {
	key crypto.Signer
	reg *acme.ExtendedAccount
}

func (u *user) GetEmail() string                       { return "" }
func (u *user) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer           { return u.key }

func newUser(t testing.TB) *user {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &user{key: k}
}

// legoClient is a lego client for prov that trusts the test root, with
// every challenge solver pointed at the test's servers.
func (e *env) legoClient(t testing.TB, prov string, u *user) *lego.Client {
	t.Helper()
	cfg := lego.NewConfig(u)
	cfg.CADirURL = e.directory(prov)
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.in.Roots}, MaxIdleConnsPerHost: 4,
	}}
	cfg.Certificate.OverallRequestLimit = 1000
	c, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) useHTTP01(t testing.TB, c *lego.Client) {
	if err := c.Challenge.SetHTTP01Provider(e.h01); err != nil {
		t.Fatal(err)
	}
}

func register(t testing.TB, c *lego.Client, u *user) {
	t.Helper()
	reg, err := c.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	u.reg = reg
}

// verifyLeaf checks the certificate chains to the test root and carries
// exactly names.
func (e *env) verifyLeaf(t *testing.T, pemChain []byte, names ...string) *x509.Certificate {
	t.Helper()
	certs, err := certcrypto.ParsePEMBundle(pemChain)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 {
		t.Fatalf("want leaf and intermediate, got %d certificates", len(certs))
	}
	inter := x509.NewCertPool()
	inter.AddCert(certs[1])
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.in.Roots, Intermediates: inter}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	var got []string
	got = append(got, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		got = append(got, ip.String())
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("certificate names %v, want %v", got, names)
	}
	return leaf
}

func TestLegoHTTP01ObtainRenewRevoke(t *testing.T) {
	testLegoFullCycle(t, "")
}

func TestLegoHTTP01OnPostgres(t *testing.T) {
	testLegoFullCycle(t, servertest.PostgresURL(t))
}

func testLegoFullCycle(t *testing.T, storeURL string) {
	e := newEnv(t, storeURL)
	ctx := context.Background()
	u := newUser(t)
	c := e.legoClient(t, "acme", u)
	e.useHTTP01(t, c)
	register(t, c, u)

	res, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"app.test", "www.app.test", "127.0.0.1"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	leaf := e.verifyLeaf(t, res.Certificate, "app.test", "www.app.test", "127.0.0.1")
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 24*time.Hour || life > 24*time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, want the provisioner default 24h", life)
	}

	// ARI: the suggested window lies in the last third of the lifetime.
	ri, err := c.Certificate.GetRenewalInfo(ctx, leaf)
	if err != nil {
		t.Fatalf("renewal info: %v", err)
	}
	if s := ri.SuggestedWindow.Start; s.Before(leaf.NotAfter.Add(-9*time.Hour)) || s.After(leaf.NotAfter.Add(-7*time.Hour)) {
		t.Errorf("window starts %s for a certificate expiring %s", s, leaf.NotAfter)
	}
	if at := ri.ShouldRenewAt(time.Now(), time.Hour); at != nil {
		t.Errorf("fresh certificate should not be renewed yet, lego says %s", at)
	}

	// Renew through ARI's replaces.
	renewed, err := c.Certificate.Renew(ctx, *res, &certificate.RenewOptions{Bundle: true, KeyType: certcrypto.EC256, UseARICertID: true})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	leaf2 := e.verifyLeaf(t, renewed.Certificate, "app.test", "www.app.test", "127.0.0.1")
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}
	// A second renewal replacing the same certificate is refused with
	// 409 alreadyReplaced; lego then orders again without "replaces" (RFC
	// 9773, section 5), so it still gets a certificate.
	if _, err := c.Certificate.Renew(ctx, *res, &certificate.RenewOptions{Bundle: true, KeyType: certcrypto.EC256, UseARICertID: true}); err != nil {
		t.Fatalf("second renewal: %v", err)
	}
	if n := e.metric(t, `meshpki_acme_requests_total{problem="alreadyReplaced",route="new-order",status="409"}`); n != 1 {
		t.Fatalf("alreadyReplaced refusals counted: %v, want 1", n)
	}

	// Revoke and check the store and ARI say so.
	if err := c.Certificate.Revoke(ctx, renewed.Certificate); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	rec, err := e.in.Server.Store().GetCertificate(ctx, serialOf(leaf2))
	if err != nil || rec.Status != store.StatusRevoked {
		t.Fatalf("after revoke the store says %v (%v)", rec.Status, err)
	}
	ri2, err := c.Certificate.GetRenewalInfo(ctx, leaf2)
	if err != nil {
		t.Fatal(err)
	}
	if at := ri2.ShouldRenewAt(time.Now(), 0); at == nil {
		t.Error("ARI does not ask to renew a revoked certificate now")
	}
	if err := c.Certificate.Revoke(ctx, renewed.Certificate); !containsProblem(err, "alreadyRevoked") {
		t.Fatalf("second revoke: %v, want alreadyRevoked", err)
	}
}

func TestLegoTLSALPN01(t *testing.T) {
	e := newEnv(t, "")
	u := newUser(t)
	c := e.legoClient(t, "acme", u)
	if err := c.Challenge.SetTLSALPN01Provider(e.alpn); err != nil {
		t.Fatal(err)
	}
	register(t, c, u)
	res, err := c.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{"alpn.test", "127.0.0.1"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	e.verifyLeaf(t, res.Certificate, "alpn.test", "127.0.0.1")
}

func TestLegoDNS01Wildcard(t *testing.T) {
	e := newEnv(t, "")
	u := newUser(t)
	c := e.legoClient(t, "acme", u)
	err := c.Challenge.SetDNS01Provider(acmetest.DNS01{DNS: e.dns},
		dns01.PropagationWait(0, true))
	if err != nil {
		t.Fatal(err)
	}
	register(t, c, u)
	res, err := c.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{"*.wild.test", "wild.test"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	e.verifyLeaf(t, res.Certificate, "*.wild.test", "wild.test")
}

func TestLegoEAB(t *testing.T) {
	e := newEnv(t, "")
	e.addProvisioner(t, "eab", true)
	ctx := context.Background()

	// Without a binding: refused.
	u := newUser(t)
	c := e.legoClient(t, "eab", u)
	if _, err := c.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true}); !containsProblem(err, "externalAccountRequired") {
		t.Fatalf("register without EAB: %v, want externalAccountRequired", err)
	}
	k, err := e.admin.CreateEABKey(ctx, "eab")
	if err != nil {
		t.Fatal(err)
	}
	// A wrong MAC key: refused.
	if _, err := c.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.KeyID, HmacEncoded: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U"}); !containsProblem(err, "unauthorized") {
		t.Fatalf("register with a wrong EAB MAC key: %v, want unauthorized", err)
	}
	reg, err := c.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.KeyID, HmacEncoded: k.HMACKey})
	if err != nil {
		t.Fatalf("register with EAB: %v", err)
	}
	u.reg = reg
	e.useHTTP01(t, c)
	res, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"eab.test"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	e.verifyLeaf(t, res.Certificate, "eab.test")

	// The key is spent: a second account cannot use it.
	u2 := newUser(t)
	c2 := e.legoClient(t, "eab", u2)
	if _, err := c2.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.KeyID, HmacEncoded: k.HMACKey}); !containsProblem(err, "unauthorized") {
		t.Fatalf("reuse of an EAB key: %v, want unauthorized", err)
	}
	keys, err := e.admin.ListEABKeys(ctx, "eab")
	if err != nil || len(keys) != 1 || keys[0].BoundAccount == "" {
		t.Fatalf("EAB keys after binding: %+v (%v)", keys, err)
	}
}

func TestLegoKeyRolloverAndDeactivate(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	u := newUser(t)
	c := e.legoClient(t, "acme", u)
	register(t, c, u)
	newKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Registration.KeyRollover(ctx, newKey); err != nil {
		t.Fatalf("key rollover: %v", err)
	}
	// The new key finds the same account; the old one no longer does.
	u2 := &user{key: newKey}
	found, err := e.legoClient(t, "acme", u2).Registration.ResolveAccountByKey(ctx)
	if err != nil || found.Location != u.reg.Location {
		t.Fatalf("resolve by new key: %v (%v), want %s", found, err, u.reg.Location)
	}
	if _, err := e.legoClient(t, "acme", &user{key: u.key}).Registration.ResolveAccountByKey(ctx); !containsProblem(err, "accountDoesNotExist") {
		t.Fatalf("resolve by old key: %v, want accountDoesNotExist", err)
	}
	u2.reg = found
	c2 := e.legoClient(t, "acme", u2)
	if err := c2.Registration.DeleteRegistration(ctx); err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	e.useHTTP01(t, c2)
	if _, err := c2.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"gone.test"}, KeyType: certcrypto.EC256}); !containsProblem(err, "unauthorized") {
		t.Fatalf("order by a deactivated account: %v, want unauthorized", err)
	}
}

// metric reads one sample from /metrics (0 when absent).
func (e *env) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := e.in.Anonymous.Get(e.in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func serialOf(c *x509.Certificate) store.Serial { return store.SerialOf(c.SerialNumber) }

// containsProblem reports whether a lego error carries the ACME problem
// type typ.
func containsProblem(err error, typ string) bool {
	if err == nil {
		return false
	}
	return strings.Contains(err.Error(), "urn:ietf:params:acme:error:"+typ)
}

func TestMain(m *testing.M) {
	// lego logs every step at INFO; keep warnings and errors.
	legolog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

// TestLegoHTTP01LocalhostWithSystemResolver: with no --acme-resolver the
// server resolves identifiers as the system does, so localhost (from
// /etc/hosts) validates; lego obtains a certificate for it.
func TestLegoHTTP01LocalhostWithSystemResolver(t *testing.T) {
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	e := &env{h01: acmetest.StartHTTP01(t)}
	e.in = servertest.Start(t, servertest.Options{ACMEValidation: validation.Config{HTTPPort: e.h01.Port, Timeout: 5 * time.Second}})
	var err error
	if e.admin, err = newAdmin(e.in); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CreateProvisioner(context.Background(), client.Provisioner{
		Name: "local", Type: "acme", Policy: policy.Policy{AllowDNS: []string{"localhost"}},
	}); err != nil {
		t.Fatal(err)
	}
	u := newUser(t)
	c := e.legoClient(t, "local", u)
	e.useHTTP01(t, c)
	register(t, c, u)
	res, err := c.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{"localhost"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain localhost: %v", err)
	}
	e.verifyLeaf(t, res.Certificate, "localhost")
}

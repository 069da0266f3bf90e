package web_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/storetest"
)

// signIn mints a one-time URL as the admin and signs a new browser in,
// returning the browser and its CSRF token.
func signIn(t testing.TB, in *servertest.Instance) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: in.Anonymous.Transport, Jar: jar}
	login := get(t, browser, mintLogin(t, in))
	home := post(t, browser, in.URL+"/ui/login", url.Values{"token": {field(t, login, "token")}})
	if home.status != http.StatusOK {
		t.Fatalf("sign in: %d", home.status)
	}
	return browser, field(t, home, "csrf")
}

func adminPost(t *testing.T, in *servertest.Instance, path, body string) {
	t.Helper()
	resp, err := in.Admin.Post(in.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// The alerts page lists channels and sends a test through one (with the
// CSRF token); the provisioners page shows policies and answers the
// dry-run box without issuing anything.
func TestDashboardAlertsAndProvisioners(t *testing.T) {
	var hooks atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()
	in := servertest.Start(t, servertest.Options{AllowEgress: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	adminPost(t, in, "/v1/alerts/channels", `{"name":"ops","kind":"webhook","url":"`+hook.URL+`"}`)
	adminPost(t, in, "/v1/provisioners", `{"name":"web","type":"token","policy":{"allow_dns":["*.example.internal"],"deny_dns":["admin.example.internal"]}}`)
	adminPost(t, in, "/v1/provisioners", `{"name":"hosts","type":"node","nodes":["spiffe://test.internal/node/web/*"],"policy":{"allow_dns":["*.web.internal"]}}`)
	browser, csrf := signIn(t, in)

	alerts := get(t, browser, in.URL+"/ui/alerts")
	if alerts.status != http.StatusOK || !strings.Contains(alerts.body, "Nothing is firing") || !strings.Contains(alerts.body, "ops") {
		t.Fatalf("alerts: %d\n%s", alerts.status, alerts.body)
	}
	if p := post(t, browser, in.URL+"/ui/alerts/channels/ops/test", url.Values{"csrf": {"stale"}}); p.status != http.StatusForbidden || hooks.Load() != 0 {
		t.Fatalf("a test with a stale CSRF token: %d, %d deliveries", p.status, hooks.Load())
	}
	tested := post(t, browser, in.URL+"/ui/alerts/channels/ops/test", url.Values{"csrf": {csrf}})
	if tested.status != http.StatusOK || !strings.Contains(tested.body, `id="tested"`) || hooks.Load() != 1 {
		t.Fatalf("test: %d, %d deliveries", tested.status, hooks.Load())
	}
	if p := post(t, browser, in.URL+"/ui/alerts/channels/nope/test", url.Values{"csrf": {csrf}}); p.status != http.StatusNotFound {
		t.Fatalf("an unknown channel: %d", p.status)
	}

	provs := get(t, browser, in.URL+"/ui/provisioners")
	if provs.status != http.StatusOK || !strings.Contains(provs.body, "*.example.internal") || !strings.Contains(provs.body, "<code>spiffe://test.internal/node/web/*</code>") {
		t.Fatalf("provisioners: %d\n%s", provs.status, provs.body)
	}
	for names, want := range map[string]string{"api.example.internal": "Allowed", "admin.example.internal": "Denied", "x.other.test": "Denied"} {
		p := get(t, browser, in.URL+"/ui/provisioners?provisioner=web&names="+url.QueryEscape(names))
		if p.status != http.StatusOK || !strings.Contains(p.body, `id="decision">`+want) {
			t.Errorf("would %s be allowed: %d\n%s", names, p.status, p.body)
		}
	}
	if p := get(t, browser, in.URL+"/ui/provisioners?provisioner=nope&names=a.example.internal"); !strings.Contains(p.body, `class="error" id="decision"`) {
		t.Errorf("an unknown provisioner: %s", p.body)
	}
}

// The SPIFFE page lists entries and agents; the audit page shows the
// latest records, newest first, and verifies the chain on demand.
func TestDashboardSPIFFEAndAudit(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	adminPost(t, in, "/v1/entries", `{"spiffe_id":"spiffe://test.internal/ns/web","parent":"x509pop:subject:cn:web-1","selectors":["unix:uid:1000"],"x509_ttl":"1h"}`)
	browser, _ := signIn(t, in)
	sp := get(t, browser, in.URL+"/ui/spiffe")
	if sp.status != http.StatusOK || !strings.Contains(sp.body, "spiffe://test.internal/ns/web") || !strings.Contains(sp.body, "unix:uid:1000") ||
		!strings.Contains(sp.body, "No agent has attested") {
		t.Fatalf("spiffe: %d\n%s", sp.status, sp.body)
	}
	au := get(t, browser, in.URL+"/ui/audit")
	if au.status != http.StatusOK || strings.Index(au.body, "ui.signed_in") > strings.Index(au.body, "entry.created") {
		t.Fatalf("audit, newest first: %d\n%s", au.status, au.body)
	}
	if v := get(t, browser, in.URL+"/ui/audit?verify=1"); !strings.Contains(v.body, `class="ok" id="verified">Verified:`) {
		t.Fatalf("verify:\n%s", v.body)
	}
}

// A scanned certificate's page shows where it was seen and its findings.
func TestDashboardScannedCertificate(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	now := time.Now()
	leaf := selfSigned(t, "edge.example.com", now.Add(-time.Hour), now.Add(10*24*time.Hour))
	sum := sha256.Sum256(leaf)
	fp := hex.EncodeToString(sum[:])
	seeder := in.Server.Store().(storetest.InventorySeeder)
	if err := seeder.SeedInventory(t.Context(), now, 1, func(int) store.Observation {
		return store.Observation{Scope: "10.0.0.0/24:443", Location: "10.0.0.7:443", Chain: [][]byte{leaf}, Fingerprint: fp, Serial: "1",
			Subject: "CN=edge.example.com", IssuerDN: "CN=edge.example.com", Names: []string{"edge.example.com"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(10 * 24 * time.Hour), Findings: []store.StoredFinding{{Check: "untrusted", Severity: "error", Message: "self-signed"}}}
	}); err != nil {
		t.Fatal(err)
	}
	browser, _ := signIn(t, in)
	inv := get(t, browser, in.URL+"/ui/inventory?source=scanned")
	if !strings.Contains(inv.body, `href="/ui/inventory/`+fp+`"`) {
		t.Fatalf("inventory has no link to the scanned certificate:\n%s", inv.body)
	}
	p := get(t, browser, in.URL+"/ui/inventory/"+fp)
	if p.status != http.StatusOK || !strings.Contains(p.body, "10.0.0.7:443") || !strings.Contains(p.body, "untrusted") || !strings.Contains(p.body, "expires in 10d") {
		t.Fatalf("scanned certificate: %d\n%s", p.status, p.body)
	}
	for path, want := range map[string]int{"/ui/inventory/" + strings.Repeat("0", 64): http.StatusNotFound, "/ui/inventory/xyz": http.StatusBadRequest} {
		if p := get(t, browser, in.URL+path); p.status != want {
			t.Errorf("%s: %d, want %d", path, p.status, want)
		}
	}
}

// An issued certificate's page shows its chain as the CA holds it (the
// intermediate generation that signed it, downloadable, and the root, each
// checked), where scans saw it, and its audit trail.
func TestDashboardCertificateChainSightingsTrail(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	leaf, err := x509.ParseCertificate(in.AdminCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	now := time.Now()
	seeder := in.Server.Store().(storetest.InventorySeeder)
	if err := seeder.SeedInventory(t.Context(), now, 1, func(int) store.Observation {
		return store.Observation{Scope: "10.0.0.0/24:8443", Location: "10.0.0.9:8443", Chain: [][]byte{leaf.Raw}, Fingerprint: fp,
			Serial: store.Serial(serial), Subject: leaf.Subject.String(), IssuerDN: leaf.Issuer.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	}); err != nil {
		t.Fatal(err)
	}
	browser, _ := signIn(t, in)
	p := get(t, browser, in.URL+"/ui/certificates/"+serial)
	if p.status != http.StatusOK {
		t.Fatalf("certificate page: %d\n%s", p.status, p.body)
	}
	chain := p.body[strings.Index(p.body, `id="chain"`):]
	chain = chain[:strings.Index(chain, "</ol>")]
	for _, want := range []string{"(this certificate)", `Intermediate CA (default\, 1)`, "signed the certificate above", `href="/intermediates/default/1.der"`,
		"Root CA,O=Test (root)", "signed the intermediate above"} {
		if !strings.Contains(chain, want) {
			t.Errorf("chain lacks %q:\n%s", want, chain)
		}
	}
	if strings.Contains(chain, "does not verify") {
		t.Errorf("chain: %s", chain)
	}
	der := get(t, in.Anonymous, in.URL+"/intermediates/default/1.der")
	if inter, err := x509.ParseCertificate([]byte(der.body)); err != nil || leaf.CheckSignatureFrom(inter) != nil {
		t.Fatalf("the chain's download link: %d %v", der.status, err)
	}
	if !strings.Contains(p.body, "<td>10.0.0.9:8443</td>") || !strings.Contains(p.body, `href="/ui/inventory/`+fp+`"`) {
		t.Errorf("no sighting:\n%s", p.body)
	}
	trail := p.body[strings.Index(p.body, `id="trail"`):]
	if !strings.Contains(trail, "<td>certificate.issued</td>") || strings.Contains(trail, "ui.signed_in") {
		t.Errorf("trail:\n%s", trail)
	}
}

// TestDashboardSessionEndsWithItsOperator: a dashboard session belongs to
// the admin who signed in; once that operator is retired, the session is
// refused at the next page.
func TestDashboardSessionEndsWithItsOperator(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	browser, _ := signIn(t, in)
	if p := get(t, browser, in.URL+"/ui/"); p.status != http.StatusOK {
		t.Fatalf("overview: %d", p.status)
	}
	key, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := in.Server.Operators().Add(ctx, operator.AddRequest{Name: "second", Role: store.RoleAdmin, PublicKey: key.Public(), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Server.Operators().Retire(ctx, operator.Bootstrap, "test"); err != nil {
		t.Fatal(err)
	}
	if p := get(t, browser, in.URL+"/ui/"); p.status != http.StatusForbidden {
		t.Fatalf("a retired operator's session: %d", p.status)
	}
}

package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/api"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/certlint"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

var webPolicy = map[string]any{
	"allow_dns": []string{"*.example.internal"},
	"deny_dns":  []string{"db.example.internal"},
	"allow_ip":  []string{"10.0.0.0/8"},
	"allow_uri": []string{"spiffe://test.internal/web/"},
	"max_ttl":   "48h",
}

func TestSignIssuesVerifiableCertificateWithGrantedNames(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	tok := newToken(t, in, "web", "api", "api.example.internal", "10.0.0.7", "spiffe://test.internal/web/api")
	_, csr := newCSR(t, keys.ECP256, "api")

	var got issued
	status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok, "ttl": "2h"}, &got)
	if status != http.StatusCreated {
		t.Fatalf("sign: %d %s", status, raw)
	}
	certs, err := ca.ParseCertificatesPEM([]byte(got.Certificate))
	if err != nil || len(certs) != 2 {
		t.Fatalf("want leaf and intermediate, got %d certs (%v)", len(certs), err)
	}
	leaf := certs[0]
	if store.SerialOf(leaf.SerialNumber) != store.Serial(got.Serial) {
		t.Errorf("serial %s, response says %s", store.SerialOf(leaf.SerialNumber), got.Serial)
	}
	if leaf.SerialNumber.BitLen() < 100 {
		t.Errorf("serial has only %d bits", leaf.SerialNumber.BitLen())
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 2*time.Hour || life > 2*time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, want 2h (plus backdating)", life)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "api.example.internal" || len(leaf.IPAddresses) != 1 || len(leaf.URIs) != 1 {
		t.Errorf("names = %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.URIs)
	}
	if leaf.Subject.CommonName != "api" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	opensslVerify(t, in, got.Certificate)

	// Recorded before the response, and audited.
	rec, err := in.Server.Store().GetCertificate(context.Background(), store.Serial(got.Serial))
	if err != nil || rec.Provisioner != "web" || rec.Status != store.StatusValid {
		t.Fatalf("store record: %+v, %v", rec, err)
	}
	if ev := lastEvent(t, in); ev.Type != audit.TypeCertificateIssued || ev.Subject != got.Serial {
		t.Errorf("last audit event %+v", ev)
	}
}

func TestSignUsesCSRNamesOnlyWithinTheTokenGrant(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)

	// The CSR may narrow the token's names…
	tok := newToken(t, in, "web", "api", "a.example.internal", "b.example.internal")
	_, csr := newCSR(t, keys.ECP256, "", "b.example.internal")
	var got issued
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, &got); status != http.StatusCreated {
		t.Fatalf("sign: %d %s", status, raw)
	}
	leaf, _ := ca.ParseCertificatesPEM([]byte(got.Certificate))
	if fmt.Sprint(leaf[0].DNSNames) != "[b.example.internal]" {
		t.Errorf("DNS names %v, want only the CSR's", leaf[0].DNSNames)
	}
	// …but not widen them, even to a name policy would allow.
	tok = newToken(t, in, "web", "api", "a.example.internal")
	_, csr = newCSR(t, keys.ECP256, "", "a.example.internal", "c.example.internal")
	status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil)
	wantError(t, status, raw, http.StatusForbidden, "forbidden")
}

// TestBadInputIsRefusedCountedAuditedAndChangesNothing covers every kind of
// bad request the issue lists.
func TestBadInputIsRefusedCountedAuditedAndChangesNothing(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	keyring := testKeyring(t, in)
	_, goodCSR := newCSR(t, keys.ECP256, "api", "api.example.internal")

	mint := func(mut func(*token.Claims)) string {
		now := time.Now()
		c := token.Claims{Provisioner: "web", Subject: "api", SANs: []string{"api.example.internal"}, Audience: in.Server.URL() + "/v1/sign",
			Purpose: token.PurposeSign, IssuedAt: now, NotBefore: now, Expiry: now.Add(5 * time.Minute)}
		mut(&c)
		s, err := keyring.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replayed := newToken(t, in, "web", "api", "api.example.internal")
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": goodCSR, "token": replayed}, nil); status != 201 {
		t.Fatalf("first use of token: %d %s", status, raw)
	}

	badSigCSR := func() string {
		block, _ := pem.Decode([]byte(goodCSR))
		der := append([]byte(nil), block.Bytes...)
		der[len(der)-5] ^= 0xff // inside the signature
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)

	cases := []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"malformed CSR", map[string]any{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "token": newToken(t, in, "web", "api", "api.example.internal")}, 400, "bad_csr"},
		{"non-PEM CSR", map[string]any{"csr": "hello", "token": newToken(t, in, "web", "api", "api.example.internal")}, 400, "bad_csr"},
		{"CSR signature fails", map[string]any{"csr": badSigCSR, "token": newToken(t, in, "web", "api", "api.example.internal")}, 400, "bad_csr"},
		{"oversize body", `{"csr":"` + strings.Repeat("A", 2<<20) + `"}`, 413, "body_too_large"},
		{"unknown field", map[string]any{"csr": goodCSR, "token": "x", "admin": true}, 400, "bad_request"},
		{"not JSON", "{csr:", 400, "bad_request"},
		{"token for another audience", map[string]any{"csr": goodCSR, "token": mint(func(c *token.Claims) { c.Audience = "https://elsewhere:8443/v1/sign" })}, 401, "unauthorized"},
		{"expired token", map[string]any{"csr": goodCSR, "token": mint(func(c *token.Claims) {
			c.IssuedAt, c.NotBefore, c.Expiry = time.Now().Add(-10*time.Minute), time.Now().Add(-10*time.Minute), time.Now().Add(-time.Minute)
		})}, 401, "unauthorized"},
		{"replayed token", map[string]any{"csr": goodCSR, "token": replayed}, 401, "unauthorized"},
		{"garbage token", map[string]any{"csr": goodCSR, "token": "not.a.jwt"}, 401, "unauthorized"},
		{"SAN outside policy", map[string]any{"csr": csrNoNames(t), "token": mint(func(c *token.Claims) { c.SANs = []string{"api.evil.com"} })}, 403, "forbidden"},
		{"denied SAN", map[string]any{"csr": csrNoNames(t), "token": mint(func(c *token.Claims) { c.SANs = []string{"db.example.internal"} })}, 403, "forbidden"},
		{"reserved SAN", map[string]any{"csr": csrNoNames(t), "token": mint(func(c *token.Claims) { c.SANs = []string{"spiffe://test.internal/meshpki/admin/x"} })}, 403, "forbidden"},
		{"TTL above max", map[string]any{"csr": goodCSR, "token": newToken(t, in, "web", "api", "api.example.internal"), "ttl": "72h"}, 403, "forbidden"},
		{"TTL under 5 minutes", map[string]any{"csr": goodCSR, "token": newToken(t, in, "web", "api", "api.example.internal"), "ttl": "1m"}, 403, "forbidden"},
		{"weak RSA key", map[string]any{"csr": csrFor(t, rsa1024, "api", "api.example.internal"), "token": newToken(t, in, "web", "api", "api.example.internal")}, 400, "bad_key"},
		{"unsupported curve", map[string]any{"csr": csrFor(t, p224, "api", "api.example.internal"), "token": newToken(t, in, "web", "api", "api.example.internal")}, 400, "bad_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := countCerts(t, in)
			beforeErrors := metricValue(t, in, fmt.Sprintf(`meshpki_http_errors_total{error=%q,route="/v1/sign"}`, tc.wantCode))
			beforeSeq, _, _ := in.Server.Store().AuditHead(context.Background())
			status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", tc.body, nil)
			wantError(t, status, raw, tc.wantStatus, tc.wantCode)
			if after := countCerts(t, in); after != before {
				t.Errorf("certificates %d → %d: a refused request changed the store", before, after)
			}
			if got := metricValue(t, in, fmt.Sprintf(`meshpki_http_errors_total{error=%q,route="/v1/sign"}`, tc.wantCode)); got != beforeErrors+1 {
				t.Errorf("error metric %v → %v, want +1", beforeErrors, got)
			}
			// Every refusal is audited as denied, whoever decided it
			// (repeated anonymous ones in a summary at the end of their
			// window, which this flush ends now).
			in.Server.Authority().FlushRefusals(context.Background(), true)
			ev := lastEvent(t, in)
			if ev.Seq <= beforeSeq || ev.Type != audit.TypeRequestDenied || ev.Outcome != "denied" || ev.Detail["reason"] == "" {
				t.Errorf("last audit event %+v, want a new request.denied with a reason", ev)
			}
		})
	}
	rep, err := audit.Verify(context.Background(), in.Server.Store(), nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit chain after refusals: %+v %v", rep, err)
	}
}

func TestRenewKeepsIdentityRotatesKeyAndRefusesRevoked(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	key, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	var first issued
	do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal"), "ttl": "1h"}, &first)
	holder := tlsCert(t, first.Certificate, key)
	hc := in.Client(&holder)

	// Without a CSR: same key.
	var renewed issued
	if status, raw := do(t, hc, "POST", in.URL+"/v1/renew", map[string]any{}, &renewed); status != 201 {
		t.Fatalf("renew: %d %s", status, raw)
	}
	oldLeaf, newLeaf := leafOf(t, first.Certificate), leafOf(t, renewed.Certificate)
	if renewed.Serial == first.Serial || fmt.Sprint(newLeaf.DNSNames) != fmt.Sprint(oldLeaf.DNSNames) || newLeaf.Subject.CommonName != "api" {
		t.Fatalf("renewal changed identity: %v → %v", oldLeaf.DNSNames, newLeaf.DNSNames)
	}
	if !newLeaf.PublicKey.(*ecdsa.PublicKey).Equal(oldLeaf.PublicKey) {
		t.Error("renewal without a CSR changed the key")
	}
	if d := newLeaf.NotAfter.Sub(newLeaf.NotBefore); d < time.Hour || d > time.Hour+2*time.Minute {
		t.Errorf("renewed lifetime %s, want the original 1h", d)
	}
	rec, _ := in.Server.Store().GetCertificate(context.Background(), store.Serial(renewed.Serial))
	if rec.RenewedFrom != store.Serial(first.Serial) {
		t.Errorf("renewed_from = %q", rec.RenewedFrom)
	}
	opensslVerify(t, in, renewed.Certificate)

	// With a CSR: a new key, and the CSR's names are ignored.
	key2, csr2 := newCSR(t, keys.ECP256, "evil", "evil.example.com")
	var rotated issued
	if status, raw := do(t, hc, "POST", in.URL+"/v1/renew", map[string]any{"csr": csr2}, &rotated); status != 201 {
		t.Fatalf("renew with CSR: %d %s", status, raw)
	}
	rl := leafOf(t, rotated.Certificate)
	if !rl.PublicKey.(*ecdsa.PublicKey).Equal(key2.Public()) || fmt.Sprint(rl.DNSNames) != "[api.example.internal]" {
		t.Errorf("rotated: names %v", rl.DNSNames)
	}

	// No client certificate: refused.
	status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/renew", map[string]any{}, nil)
	wantError(t, status, raw, 401, "unauthorized")

	// The holder revokes its own certificate, then cannot renew with it.
	// (superseded: keyCompromise would take its renewals along, which
	// TestRevocationReachesRenewals checks.)
	var revoked map[string]any
	if status, raw := do(t, hc, "POST", in.URL+"/v1/revoke", map[string]any{"serial": first.Serial, "reason": "superseded"}, &revoked); status != 200 {
		t.Fatalf("holder revoke: %d %s", status, raw)
	}
	if revoked["status"] != "revoked" || revoked["revocation_reason"] != "superseded" {
		t.Errorf("revoke response %v", revoked)
	}
	status, raw = do(t, in.Client(&holder), "POST", in.URL+"/v1/renew", map[string]any{}, nil)
	wantError(t, status, raw, 401, "unauthorized")
	// Revoking again is a conflict; a holder cannot revoke someone else's.
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": first.Serial}, nil)
	wantError(t, status, raw, 409, "conflict")
	holder2 := tlsCert(t, rotated.Certificate, key2)
	status, raw = do(t, in.Client(&holder2), "POST", in.URL+"/v1/revoke", map[string]any{"serial": renewed.Serial}, nil)
	wantError(t, status, raw, 403, "forbidden")
	// The admin can.
	if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": renewed.Serial, "reason": "superseded"}, nil); status != 200 {
		t.Fatalf("admin revoke: %d %s", status, raw)
	}
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": "nothex!"}, nil)
	wantError(t, status, raw, 400, "bad_request")
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": "abc123", "reason": "becauseISaidSo"}, nil)
	wantError(t, status, raw, 400, "bad_request")
}

func TestCertificateListingFiltersAndPages(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	var serials []string
	for i := range 5 {
		name := fmt.Sprintf("s%d.example.internal", i)
		_, csr := newCSR(t, keys.ECP256, "", name)
		var got issued
		do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "svc", name), "ttl": fmt.Sprintf("%dh", i+1)}, &got)
		serials = append(serials, got.Serial)
	}
	do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": serials[0]}, nil)

	type page struct {
		Certificates []map[string]any `json:"certificates"`
		Next         string           `json:"next"`
	}
	var p page
	do(t, in.Admin, "GET", in.URL+"/v1/certificates?name=s3.example.internal", nil, &p)
	if len(p.Certificates) != 1 || p.Certificates[0]["serial"] != serials[3] {
		t.Errorf("by name: %v", p.Certificates)
	}
	do(t, in.Admin, "GET", in.URL+"/v1/certificates?status=revoked", nil, &p)
	if len(p.Certificates) != 1 || p.Certificates[0]["serial"] != serials[0] {
		t.Errorf("revoked: %v", p.Certificates)
	}
	do(t, in.Admin, "GET", in.URL+"/v1/certificates?expiring_before=150m&status=valid", nil, &p)
	if len(p.Certificates) != 1 || p.Certificates[0]["serial"] != serials[1] {
		t.Errorf("expiring before 150m: %v", p.Certificates)
	}
	// Page through everything (5 leaves + the server's and admin's own).
	seen := map[string]bool{}
	next := ""
	for pages := 0; ; pages++ {
		p = page{}
		do(t, in.Admin, "GET", in.URL+"/v1/certificates?limit=2&after="+next, nil, &p)
		for _, c := range p.Certificates {
			seen[c["serial"].(string)] = true
		}
		if next = p.Next; next == "" || pages > 10 {
			break
		}
	}
	for _, s := range serials {
		if !seen[s] {
			t.Errorf("paging missed %s", s)
		}
	}
	var one map[string]any
	do(t, in.Admin, "GET", in.URL+"/v1/certificates/"+serials[2], nil, &one)
	if !strings.Contains(fmt.Sprint(one["certificate"]), "BEGIN CERTIFICATE") {
		t.Errorf("get: %v", one)
	}
	status, raw := do(t, in.Admin, "GET", in.URL+"/v1/certificates/abcdef", nil, nil)
	wantError(t, status, raw, 404, "not_found")
	status, raw = do(t, in.Admin, "GET", in.URL+"/v1/certificates?status=weird", nil, nil)
	wantError(t, status, raw, 400, "bad_request")
}

func TestAdminEndpointsNeedAnAdminCertificate(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	key, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	var got issued
	do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal")}, &got)
	holder := tlsCert(t, got.Certificate, key)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/certificates"}, {"POST", "/v1/tokens"}, {"GET", "/v1/provisioners"}, {"POST", "/v1/policy/check"}, {"DELETE", "/v1/provisioners/web"},
	} {
		status, raw := do(t, in.Anonymous, ep.method, in.URL+ep.path, nil, nil)
		wantError(t, status, raw, 401, "unauthorized")
		status, raw = do(t, in.Client(&holder), ep.method, in.URL+ep.path, nil, nil)
		wantError(t, status, raw, 403, "forbidden")
	}
	status, raw := do(t, in.Anonymous, "DELETE", in.URL+"/v1/sign", nil, nil)
	wantError(t, status, raw, 405, "method_not_allowed")
	status, raw = do(t, in.Anonymous, "GET", in.URL+"/v2/nothing", nil, nil)
	wantError(t, status, raw, 404, "not_found")
}

func TestProvisionerChangesApplyWithoutRestart(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	check := func(san string) map[string]any {
		var d map[string]any
		status, raw := do(t, in.Admin, "POST", in.URL+"/v1/policy/check", map[string]any{"provisioner": "web", "sans": []string{san}}, &d)
		if status != 200 {
			t.Fatalf("check: %d %s", status, raw)
		}
		return d
	}
	if d := check("api.example.internal"); d["allowed"] != true {
		t.Fatalf("check allowed: %v", d)
	}
	if d := check("db.example.internal"); d["allowed"] != false || !strings.Contains(fmt.Sprint(d["rule"]), "deny_dns") {
		t.Fatalf("check denied: %v", d)
	}
	// Tighten the policy: the next token and check see it at once.
	pol := map[string]any{"allow_dns": []string{"*.other.internal"}}
	if status, raw := do(t, in.Admin, "PUT", in.URL+"/v1/provisioners/web", provisioner{Type: "token", Policy: pol}, nil); status != 200 {
		t.Fatalf("update: %d %s", status, raw)
	}
	if d := check("api.example.internal"); d["allowed"] != false {
		t.Fatalf("after update: %v", d)
	}
	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", map[string]any{"subject": "api", "sans": []string{"api.example.internal"}, "provisioner": "web"}, nil)
	wantError(t, status, raw, 403, "forbidden")
	// Bad policies and names are refused.
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: "Bad Name", Type: "token"}, nil)
	wantError(t, status, raw, 400, "bad_request")
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: "x", Type: "token", Policy: map[string]any{"allow_ip": []string{"not-a-cidr"}}}, nil)
	wantError(t, status, raw, 400, "bad_request")
	status, raw = do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: "web", Type: "token"}, nil)
	wantError(t, status, raw, 409, "conflict")
	// Removal stops its tokens.
	tok := newToken(t, in, "web", "x", "x.other.internal")
	if status, _ := do(t, in.Admin, "DELETE", in.URL+"/v1/provisioners/web", nil, nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	_, csr := newCSR(t, keys.ECP256, "x", "x.other.internal")
	status, raw = do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil)
	wantError(t, status, raw, 401, "unauthorized")
	status, raw = do(t, in.Admin, "GET", in.URL+"/v1/provisioners/web", nil, nil)
	wantError(t, status, raw, 404, "not_found")
}

func TestPublicEndpoints(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, path := range []string{"/roots.pem", "/intermediates.pem"} {
		status, body := do(t, in.Anonymous, "GET", in.URL+path, nil, nil)
		if status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
		if _, err := ca.ParseCertificatesPEM(body); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body := do(t, in.Anonymous, "GET", in.URL+path, nil, nil); status != 200 || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("%s: %d %q", path, status, body)
		}
	}
	_, metrics := do(t, in.Anonymous, "GET", in.URL+"/metrics", nil, nil)
	if !strings.Contains(string(metrics), `meshpki_http_requests_total{code="200",route="/healthz"}`) {
		t.Errorf("metrics lack request counts:\n%.2000s", metrics)
	}
}

func TestTwoServersOnOnePostgreSQLShareTokensAndSerials(t *testing.T) {
	pg := servertest.PostgresURL(t)
	publicURL := "https://ca.test.internal:8443"
	a := servertest.Start(t, servertest.Options{StoreURL: pg, PublicURL: publicURL})
	b := servertest.Start(t, servertest.Options{StoreURL: pg, PublicURL: publicURL, DataDir: a.DataDir})
	addProvisioner(t, a, "web", webPolicy)

	// A token used on one replica is refused on the other.
	tok := newToken(t, a, "web", "api", "api.example.internal")
	_, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	if status, raw := do(t, b.Anonymous, "POST", b.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil); status != 201 {
		t.Fatalf("sign on b: %d %s", status, raw)
	}
	status, raw := do(t, a.Anonymous, "POST", a.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil)
	wantError(t, status, raw, 401, "unauthorized")

	// Both issue concurrently; every serial is distinct and recorded.
	var mu sync.Mutex
	serials := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 40 {
		in := a
		if i%2 == 1 {
			in = b
		}
		tok := newToken(t, in, "web", "svc", "svc.example.internal")
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got issued
			_, csr := newCSR(t, keys.ECP256, "", "svc.example.internal")
			if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, &got); status != 201 {
				t.Errorf("sign: %d %s", status, raw)
				return
			}
			mu.Lock()
			serials[got.Serial] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(serials) != 40 {
		t.Fatalf("%d distinct serials, want 40", len(serials))
	}
	for s := range serials {
		if _, err := b.Server.Store().GetCertificate(context.Background(), store.Serial(s)); err != nil {
			t.Errorf("serial %s not recorded: %v", s, err)
		}
	}
	rep, err := audit.Verify(context.Background(), a.Server.Store(), nil)
	if err != nil || !rep.OK() {
		t.Fatalf("shared audit chain: %+v %v", rep, err)
	}
}

// --- helpers that need the server's internals ---

func testKeyring(t testing.TB, in *servertest.Instance) *token.Keyring {
	t.Helper()
	kb := keys.NewFileBackend(filepath.Join(in.DataDir, "ca", "keys"), []byte(servertest.Password))
	secret, err := kb.LoadSecret(context.Background(), in.Server.Authority().Hierarchy().TokenKeyRef())
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrNoNames(t testing.TB) string {
	_, csr := newCSR(t, keys.ECP256, "")
	return csr
}

func countCerts(t testing.TB, in *servertest.Instance) int {
	t.Helper()
	n := 0
	f := store.CertFilter{Limit: 1000}
	for {
		p, err := in.Server.Store().ListCertificates(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Certificates)
		if p.Next == "" {
			return n
		}
		f.After = p.Next
	}
}

func lastEvent(t testing.TB, in *servertest.Instance) audit.Event {
	t.Helper()
	seq, _, err := in.Server.Store().AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := in.Server.Store().ListAudit(context.Background(), seq-1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("last audit event: %v %v", evs, err)
	}
	return evs[0]
}

func metricValue(t testing.TB, in *servertest.Instance, series string) float64 {
	t.Helper()
	_, body := do(t, in.Anonymous, "GET", in.URL+"/metrics", nil, nil)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, series+" "), &v)
			return v
		}
	}
	return 0
}

func leafOf(t testing.TB, chainPEM string) *x509.Certificate {
	t.Helper()
	certs, err := ca.ParseCertificatesPEM([]byte(chainPEM))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func tlsCert(t testing.TB, chainPEM string, key any) tls.Certificate {
	t.Helper()
	certs, err := ca.ParseCertificatesPEM([]byte(chainPEM))
	if err != nil {
		t.Fatal(err)
	}
	out := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// TestUnauthorizedCarriesAChallenge: RFC 9110, section 15.5.2 — every 401
// carries WWW-Authenticate.
func TestUnauthorizedCarriesAChallenge(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, path := range []string{"/v1/renew", "/v1/sign", "/v1/provisioners"} {
		req, _ := http.NewRequest("POST", in.URL+path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := in.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != api.WWWAuthenticate {
			t.Errorf("POST %s: %d, WWW-Authenticate %q", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestAnonymousRefusalsCannotGrowTheAuditLog sends 40 refused requests
// without a credential, each quoting almost a megabyte (an unknown field
// name, a Content-Type): the answers and the audit records quote at most
// ca.MaxClientText bytes of it, and the 40 refusals cost two audit records
// per reason — the first, and one summary counting the rest.
func TestAnonymousRefusalsCannotGrowTheAuditLog(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	beforeSeq, _, _ := in.Server.Store().AuditHead(ctx)
	huge := strings.Repeat("a", 900_000)
	for i := range 40 {
		body, ct := `{"`+huge+`":1}`, "application/json"
		if i%2 == 1 {
			body, ct = `{}`, "text/"+huge
		}
		req, _ := http.NewRequest("POST", in.URL+"/v1/sign", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, err := in.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || len(raw) > 2*ca.MaxClientText || !strings.Contains(string(raw), "bytes)") {
			t.Fatalf("request %d: %d, %d-byte answer: %.300s", i, resp.StatusCode, len(raw), raw)
		}
	}
	in.Server.Authority().FlushRefusals(ctx, true)
	head, _, _ := in.Server.Store().AuditHead(ctx)
	evs, err := in.Server.Store().ListAudit(ctx, beforeSeq, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n := head - beforeSeq; n != 4 || len(evs) != 4 {
		t.Fatalf("40 refusals made %d audit records, want 4 (first and summary, for each of two reasons)", n)
	}
	repeated := 0
	for _, ev := range evs {
		size := len(ev.Actor) + len(ev.Subject)
		for k, v := range ev.Detail {
			size += len(k) + len(v)
		}
		if size > 4*ca.MaxClientText {
			t.Errorf("audit record of %d bytes: %+v", size, ev)
		}
		if r := ev.Detail["repeated"]; r != "" {
			n, _ := strconv.Atoi(r)
			repeated += n
		}
	}
	if repeated != 38 {
		t.Fatalf("summaries count %d repeats, want 38", repeated)
	}
	rep, err := audit.Verify(ctx, in.Server.Store(), nil)
	if err != nil || !rep.OK() {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
}

// TestRevocationReachesRenewals: a certificate renewed before its parent
// was revoked must not outlive the revocation. keyCompromise revokes the
// whole renewal line; another reason does so only when asked. The admin
// credential case is the one that matters most: a renewed admin certificate
// loses its rights with the original.
func TestRevocationReachesRenewals(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	renewLine := func(n int) (serials []string, last tls.Certificate) {
		t.Helper()
		key, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
		var cur issued
		if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal")}, &cur); status/100 != 2 {
			t.Fatalf("sign: %d %s", status, raw)
		}
		serials = append(serials, cur.Serial)
		last = tlsCert(t, cur.Certificate, key)
		for range n {
			var next issued
			if status, raw := do(t, in.Client(&last), "POST", in.URL+"/v1/renew", map[string]any{}, &next); status/100 != 2 {
				t.Fatalf("renew: %d %s", status, raw)
			}
			serials = append(serials, next.Serial)
			last = tlsCert(t, next.Certificate, key)
		}
		return serials, last
	}
	revoke := func(body map[string]any) (renewals []string) {
		t.Helper()
		var out struct {
			Status          string   `json:"status"`
			RevokedRenewals []string `json:"revoked_renewals"`
		}
		if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/revoke", body, &out); status != 200 || out.Status != "revoked" {
			t.Fatalf("revoke %v: %d %s", body, status, raw)
		}
		return out.RevokedRenewals
	}
	statusOf := func(serial string) store.Status {
		rec, err := in.Server.Store().GetCertificate(context.Background(), store.Serial(serial))
		if err != nil {
			t.Fatal(err)
		}
		return rec.Status
	}

	// keyCompromise: the two renewals go with the original, and the last
	// can no longer renew.
	line, last := renewLine(2)
	got := revoke(map[string]any{"serial": line[0], "reason": "keyCompromise"})
	want := slices.Sorted(slices.Values(line[1:]))
	if !slices.Equal(got, want) {
		t.Fatalf("revoked renewals %v, want %v", got, want)
	}
	for _, s := range line {
		if statusOf(s) != store.StatusRevoked {
			t.Errorf("%s is still %s", s, statusOf(s))
		}
	}
	status, raw := do(t, in.Client(&last), "POST", in.URL+"/v1/renew", map[string]any{}, nil)
	wantError(t, status, raw, 401, "unauthorized")

	// superseded: only the certificate named, unless renewals is asked.
	line, _ = renewLine(1)
	if got := revoke(map[string]any{"serial": line[0], "reason": "superseded"}); len(got) != 0 || statusOf(line[1]) != store.StatusValid {
		t.Fatalf("superseded revoked renewals %v; the renewal is %s", got, statusOf(line[1]))
	}
	line, _ = renewLine(1)
	if got := revoke(map[string]any{"serial": line[0], "reason": "superseded", "renewals": true}); !slices.Equal(got, line[1:]) {
		t.Fatalf("superseded with renewals revoked %v, want %v", got, line[1:])
	}

	// The admin credential, renewed, then the original revoked.
	var renewedAdmin issued
	key, csr := newCSR(t, keys.ECP256, "admin", "")
	if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/renew", map[string]any{"csr": csr}, &renewedAdmin); status/100 != 2 {
		t.Fatalf("admin renew: %d %s", status, raw)
	}
	admin2 := in.Client(ptr(tlsCert(t, renewedAdmin.Certificate, key)))
	if status, raw := do(t, admin2, "GET", in.URL+"/v1/provisioners", nil, nil); status != 200 {
		t.Fatalf("renewed admin: %d %s", status, raw)
	}
	revoke(map[string]any{"serial": store.SerialOf(in.AdminCert.Leaf.SerialNumber), "reason": "keyCompromise"})
	status, raw = do(t, admin2, "GET", in.URL+"/v1/provisioners", nil, nil)
	wantError(t, status, raw, 401, "unauthorized")
}

func ptr[T any](v T) *T { return &v }

// TestRenewalTTLNeverStretchesTheLifetime: a 5-minute certificate renewed
// with "ttl": "168h" is still a 5-minute certificate; a shorter ttl is
// honoured.
func TestRenewalTTLNeverStretchesTheLifetime(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	key, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	var first issued
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal"), "ttl": "10m"}, &first); status/100 != 2 {
		t.Fatalf("sign: %d %s", status, raw)
	}
	holder := tlsCert(t, first.Certificate, key)
	for _, tc := range []struct {
		ttl  string
		want time.Duration
	}{{"168h", 10 * time.Minute}, {"7m", 7 * time.Minute}} {
		var renewed issued
		if status, raw := do(t, in.Client(&holder), "POST", in.URL+"/v1/renew", map[string]any{"ttl": tc.ttl}, &renewed); status/100 != 2 {
			t.Fatalf("renew ttl %s: %d %s", tc.ttl, status, raw)
		}
		leaf := leafOf(t, renewed.Certificate)
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > tc.want+2*time.Minute || life < tc.want {
			t.Errorf("renewal with ttl %s lives %s, want %s (plus the backdate)", tc.ttl, life, tc.want)
		}
	}
}

// TestTokenTooLargeIsABadRequest: names that would make a token longer than
// Verify accepts are the request's fault: 400 with the limit, whether the
// raw names already exceed it or only the encoded token would; nothing is
// audited as created.
func TestTokenTooLargeIsABadRequest(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	for _, n := range []int{120, 400} { // ~7 KiB of names (too large once encoded), ~24 KiB
		var sans []string
		for i := range n {
			sans = append(sans, fmt.Sprintf("%s%03d.example.internal", strings.Repeat("a", 40), i))
		}
		before, _, _ := in.Server.Store().AuditHead(context.Background())
		status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", map[string]any{"subject": "api", "sans": sans, "provisioner": "web"}, nil)
		wantError(t, status, raw, 400, "bad_request")
		if !strings.Contains(string(raw), strconv.Itoa(token.MaxTokenSize)) {
			t.Errorf("%d names: the message does not name the limit: %s", n, raw)
		}
		if after, _, _ := in.Server.Store().AuditHead(context.Background()); after != before {
			t.Errorf("%d names: a refused token request wrote %d audit records", n, after-before)
		}
	}
}

// TestDurationFieldsAcceptDays: API duration fields take what the CLI
// prints, "1d" included.
func TestDurationFieldsAcceptDays(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	_, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	var got issued
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, "web", "api", "api.example.internal"), "ttl": "1d"}, &got); status/100 != 2 {
		t.Fatalf("sign with ttl 1d: %d %s", status, raw)
	}
	leaf := leafOf(t, got.Certificate)
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 24*time.Hour || life > 24*time.Hour+2*time.Minute {
		t.Fatalf("lifetime %s, want 1d", life)
	}
	status, raw := do(t, in.Admin, "GET", in.URL+"/v1/certificates?expiring_before=2d", nil, nil)
	if status != 200 {
		t.Fatalf("expiring_before=2d: %d %s", status, raw)
	}
}

// TestStrictJSON: field names match exactly, a key given twice is refused,
// and a body without a Content-Type is 415 — each refused, counted and
// changing nothing.
func TestStrictJSON(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	_, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	csrJSON, _ := json.Marshal(csr)
	tok := newToken(t, in, "web", "api", "api.example.internal")
	for _, tc := range []struct {
		name, body, contentType string
		status                  int
		code, want              string
	}{
		{"field name in another case", `{"CSR":` + string(csrJSON) + `,"token":"` + tok + `"}`, "application/json", 400, "bad_request", `unknown field \"CSR\"`},
		{"duplicate key", `{"csr":` + string(csrJSON) + `,"token":"` + tok + `","token":"x"}`, "application/json", 400, "bad_request", `\"token\" appears twice`},
		{"duplicate key in a nested object", `{"name":"p","type":"token","policy":{"allow_dns":["a.example"],"allow_dns":["b.example"]}}`, "application/json", 400, "bad_request", "appears twice"},
		{"no Content-Type", `{"csr":` + string(csrJSON) + `,"token":"` + tok + `"}`, "", 415, "unsupported_media_type", "no Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, client := "/v1/sign", in.Anonymous
			if strings.Contains(tc.body, `"policy"`) {
				path, client = "/v1/provisioners", in.Admin
			}
			before := countCerts(t, in)
			req, _ := http.NewRequest("POST", in.URL+path, strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, resp.StatusCode, raw, tc.status, tc.code)
			if !strings.Contains(string(raw), tc.want) {
				t.Errorf("message %s does not say %q", raw, tc.want)
			}
			if countCerts(t, in) != before {
				t.Error("a refused request issued a certificate")
			}
		})
	}
	// The token was not spent by any of them: it still works.
	if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil); status/100 != 2 {
		t.Fatalf("the token after refusals: %d %s", status, raw)
	}
}

// TestSignRefusesTokensOfANonTokenProvisioner: a token names its
// provisioner; if that name now belongs to an ACME provisioner (removed and
// added again), /v1/sign refuses the token at issuance.
func TestSignRefusesTokensOfANonTokenProvisioner(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	tok := newToken(t, in, "web", "api", "api.example.internal")
	if status, raw := do(t, in.Admin, "DELETE", in.URL+"/v1/provisioners/web", nil, nil); status/100 != 2 {
		t.Fatalf("remove: %d %s", status, raw)
	}
	if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: "web", Type: "acme", Policy: webPolicy}, nil); status != http.StatusCreated {
		t.Fatalf("add acme: %d %s", status, raw)
	}
	_, csr := newCSR(t, keys.ECP256, "api", "api.example.internal")
	before := countCerts(t, in)
	status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil)
	wantError(t, status, raw, 401, "unauthorized")
	if !strings.Contains(string(raw), "type acme") || countCerts(t, in) != before {
		t.Fatalf("refusal %s; certificates %d → %d", raw, before, countCerts(t, in))
	}
}

// TestLintBeforeSign: a certificate that would fail a lint is refused with
// the lint's name, audited, and not issued; a name that can never lint
// clean is refused already when the token is made.
func TestLintBeforeSign(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)

	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", map[string]any{"subject": "api", "sans": []string{"under_score.example.internal"}, "provisioner": "web"}, nil)
	if e := wantError(t, status, raw, http.StatusBadRequest, "bad_request"); !strings.Contains(e.Error.Message, "underscore") {
		t.Errorf("refusal %q does not say why", e.Error.Message)
	}

	// A subject with a leading space passes policy (it is the token's
	// subject, not a name) but not zlint's community lints.
	tok := newToken(t, in, "web", " api", "a.example.internal")
	_, csr := newCSR(t, keys.ECP256, "", "a.example.internal")
	before := countCerts(t, in)
	status, raw = do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil)
	e := wantError(t, status, raw, http.StatusForbidden, "forbidden")
	if !strings.Contains(e.Error.Message, "would fail lint w_subject_dn_leading_whitespace") {
		t.Errorf("refusal %q does not name the lint", e.Error.Message)
	}
	if n := countCerts(t, in); n != before {
		t.Errorf("certificates %d → %d after a refusal", before, n)
	}
	ev := lastEvent(t, in)
	if ev.Type != audit.TypeRequestDenied || ev.Detail["rule"] != "lint w_subject_dn_leading_whitespace" {
		t.Errorf("last audit event %s %v, want the denial with its lint", ev.Type, ev.Detail)
	}
	if metricValue(t, in, `meshpki_lint_checks_total{verdict="refused"}`) < 1 {
		t.Error("the refusal is not counted")
	}

	// Leaves of one shape with new keys each are linted in full once: the
	// verdict of the first is reused (internal/certlint/shape.go).
	waitForLintTable(t)
	full := metricValue(t, in, `meshpki_lint_checks_total{verdict="full"}`)
	shape := metricValue(t, in, `meshpki_lint_checks_total{verdict="shape"}`)
	for range 3 {
		tok := newToken(t, in, "web", "api", "b.example.internal")
		_, csr := newCSR(t, keys.ECP256, "", "b.example.internal")
		if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": tok}, nil); status != http.StatusCreated {
			t.Fatalf("sign: %d %s", status, raw)
		}
	}
	if df, ds := metricValue(t, in, `meshpki_lint_checks_total{verdict="full"}`)-full, metricValue(t, in, `meshpki_lint_checks_total{verdict="shape"}`)-shape; df > 1 || ds < 2 {
		t.Errorf("three leaves of one shape: %v linted in full, %v by shape; want at most 1 and at least 2", df, ds)
	}
}

// waitForLintTable waits until certlint can reuse verdicts for P-256 keys
// (the server builds its table in the background when it starts).
func waitForLintTable(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !certlint.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("certlint's small-key table was not ready within a minute")
		}
		time.Sleep(10 * time.Millisecond) // waits for the background build, not for time to pass
	}
}

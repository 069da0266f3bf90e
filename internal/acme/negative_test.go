package acme_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

func TestReplayedNonceRefused(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	nonce := c.nonce()
	body := c.jws(c.kid, nil, nonce, nil)
	if r := c.send(c.kid, body); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	c.send(c.kid, c.jws(c.kid, nil, nonce, nil)).wantProblem(t, http.StatusBadRequest, "badNonce")
	// Not a nonce this server made.
	c.send(c.kid, c.jws(c.kid, nil, "AAAA"+nonce[4:], nil)).wantProblem(t, http.StatusBadRequest, "badNonce")
	c.send(c.kid, c.jws(c.kid, nil, "", map[string]any{"nonce": nil})).wantProblem(t, http.StatusBadRequest, "badNonce")
}

// TestNonceReplayAcrossReplicas runs two server processes' worth of
// servers on one data directory and one PostgreSQL store: a nonce spent on
// one is refused by the other.
func TestNonceReplayAcrossReplicas(t *testing.T) {
	pg := servertest.PostgresURL(t)
	e := newEnv(t, pg)
	// Replicas behind one load balancer share the public URL that JWS urls
	// name.
	b := servertest.Start(t, servertest.Options{DataDir: e.in.DataDir, StoreURL: pg, PublicURL: e.in.Server.URL(), ACMEValidation: validation.Config{Resolver: e.dns.Addr}})
	c := e.rawClient(t, "acme")
	c.register()
	nonce := c.nonce()
	if r := c.send(c.kid, c.jws(c.kid, nil, nonce, nil)); r.status != http.StatusOK {
		t.Fatalf("on replica A: %d %s", r.status, r.body)
	}
	// The same request, sent to replica B, with A's spent nonce.
	onB := strings.Replace(c.kid, e.in.URL, b.URL, 1)
	c.send(onB, c.jws(c.kid, nil, nonce, nil)).wantProblem(t, http.StatusBadRequest, "badNonce")
	// A fresh nonce from A is good on B: replicas share the nonce key.
	if r := c.send(onB, c.jws(c.kid, nil, c.nonce(), nil)); r.status != http.StatusOK {
		t.Fatalf("fresh nonce from A on replica B: %d %s", r.status, r.body)
	}
}

func TestWrongURLRefused(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	r := c.send(c.url("newOrder"), c.jws(c.kid, map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "a.test"}}}, c.nonce(), nil))
	r.wantProblem(t, http.StatusForbidden, "unauthorized")
}

func TestUnsupportedAlgorithmRefused(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	for _, alg := range []string{"HS256", "ES512", "PS256", "none", "RS1"} {
		r := c.send(c.url("newAccount"), c.jws(c.url("newAccount"), map[string]any{}, c.nonce(), map[string]any{"alg": alg}))
		r.wantProblem(t, http.StatusBadRequest, "badSignatureAlgorithm")
		if strings.Join(r.problem.Algorithms, ",") != "ES256,ES384,RS256,EdDSA" {
			t.Errorf("%s: algorithms %v", alg, r.problem.Algorithms)
		}
	}
	// ES384 named for a P-256 key.
	c.send(c.url("newAccount"), c.jws(c.url("newAccount"), map[string]any{}, c.nonce(), map[string]any{"alg": "ES384"})).
		wantProblem(t, http.StatusBadRequest, "badSignatureAlgorithm")
}

func TestMalformedJWSRefused(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	u := c.url("newAccount")
	good := c.jws(u, map[string]any{}, c.nonce(), nil)
	for name, body := range map[string][]byte{
		"compact":       []byte("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
		"unprotected":   []byte(strings.Replace(string(good), `{"payload"`, `{"header":{"kid":"x"},"payload"`, 1)),
		"empty":         nil,
		"not json":      []byte("{"),
		"jwk and kid":   c.jws(u, map[string]any{}, c.nonce(), map[string]any{"kid": "https://x/acme/acme/account/1"}),
		"bad signature": []byte(strings.Replace(string(good), `"signature":"`, `"signature":"AAAA`, 1)),
		"trailing data": append(append([]byte{}, good...), []byte(`{}`)...),
		"kid for newAccount": func() []byte {
			d := *c
			d.kid = "https://x/acme/acme/account/1"
			return d.jws(u, map[string]any{}, c.nonce(), nil)
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			r := c.send(u, body)
			if r.status != http.StatusBadRequest || r.problem.Type != "urn:ietf:params:acme:error:malformed" {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	// Wrong content type.
	resp, err := c.http.Post(u, "application/json", strings.NewReader(string(good)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("application/json body: %d", resp.StatusCode)
	}
}

func TestIdentifierOutsidePolicyRejected(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	r := c.post(c.url("newOrder"), map[string]any{"identifiers": []map[string]string{
		{"type": "dns", "value": "ok.test"}, {"type": "dns", "value": "forbidden.test"}, {"type": "dns", "value": "web.example.com"}, {"type": "ip", "value": "10.1.2.3"},
	}})
	r.wantProblem(t, http.StatusBadRequest, "rejectedIdentifier")
	var refused []string
	for _, sp := range r.problem.Subproblems {
		refused = append(refused, sp.Identifier["value"])
	}
	if strings.Join(refused, ",") != "forbidden.test,web.example.com,10.1.2.3" {
		t.Fatalf("subproblems name %v", refused)
	}
	c.post(c.url("newOrder"), map[string]any{"identifiers": []map[string]string{{"type": "email", "value": "a@b.test"}}}).
		wantProblem(t, http.StatusBadRequest, "unsupportedIdentifier")
	// A wildcard is offered dns-01 only.
	o := c.newOrder("*.w.test")
	a := c.authz(o.Authorizations[0])
	if len(a.Challenges) != 1 || a.Challenges[0].Type != "dns-01" {
		t.Fatalf("wildcard challenges: %+v", a.Challenges)
	}
}

func TestFailedChallengeInvalidatesOrder(t *testing.T) {
	e := newEnv(t, "")
	before := e.certCount(t)
	c := e.rawClient(t, "acme")
	c.register()
	o := c.newOrder("nothing-served.test")
	a := c.authz(o.Authorizations[0])
	var url string
	for _, ch := range a.Challenges {
		if ch.Type == "http-01" {
			url = ch.URL
		}
	}
	// Nothing presented: the challenge server answers 404.
	r := c.post(url, map[string]any{})
	var ch struct {
		Status string `json:"status"`
		Error  struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	r.json(t, &ch)
	if ch.Status != "invalid" || ch.Error.Type != "urn:ietf:params:acme:error:unauthorized" {
		t.Fatalf("challenge after a 404: %s", r.body)
	}
	if got := c.authz(o.Authorizations[0]).Status; got != "invalid" {
		t.Fatalf("authorization is %s", got)
	}
	var order rawOrder
	c.post(o.location, nil).json(t, &order)
	if order.Status != "invalid" {
		t.Fatalf("order is %s", order.Status)
	}
	c.post(o.Finalize, map[string]any{"csr": csrFor(t, "nothing-served.test")}).wantProblem(t, http.StatusForbidden, "orderNotReady")
	// Retrying the challenge changes nothing.
	c.post(url, map[string]any{}).json(t, &ch)
	if ch.Status != "invalid" {
		t.Fatalf("challenge retried: %s", ch.Status)
	}
	if after := e.certCount(t); after != before {
		t.Fatalf("%d certificates issued", after-before)
	}
}

func TestFinalizeWithWrongCSR(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	o := c.newOrder("csr.test", "www.csr.test")
	// Finalize before validation: not ready.
	c.post(o.Finalize, map[string]any{"csr": csrFor(t, "csr.test", "www.csr.test")}).wantProblem(t, http.StatusForbidden, "orderNotReady")
	c.validateHTTP01(e, o)
	before := e.certCount(t)
	for name, csr := range map[string]string{
		"other name":   csrFor(t, "csr.test", "other.test"),
		"missing name": csrFor(t, "csr.test"),
		"garbage":      base64URL("not a csr"),
	} {
		t.Run(name, func(t *testing.T) {
			c.post(o.Finalize, map[string]any{"csr": csr}).wantProblem(t, http.StatusBadRequest, "badCSR")
		})
	}
	if after := e.certCount(t); after != before {
		t.Fatalf("a wrong CSR issued %d certificates", after-before)
	}
	var order rawOrder
	c.post(o.location, nil).json(t, &order)
	if order.Status != "ready" {
		t.Fatalf("after wrong CSRs the order is %s, want still ready", order.Status)
	}
	r := c.post(o.Finalize, map[string]any{"csr": csrFor(t, "www.csr.test", "csr.test")})
	r.json(t, &order)
	if order.Status != "valid" || order.Certificate == "" {
		t.Fatalf("finalize: %s", r.body)
	}
	cert := c.post(order.Certificate, nil)
	if ct := cert.header.Get("Content-Type"); ct != "application/pem-certificate-chain" || strings.Count(string(cert.body), "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("certificate download: %s %s", ct, cert.body)
	}
	// Another account cannot download it.
	other := e.rawClient(t, "acme")
	other.register()
	other.post(order.Certificate, nil).wantProblem(t, http.StatusForbidden, "unauthorized")
	// Finalizing again: the order is valid, not ready.
	c.post(o.Finalize, map[string]any{"csr": csrFor(t, "www.csr.test", "csr.test")}).wantProblem(t, http.StatusForbidden, "orderNotReady")
}

func TestUnknownProvisioner(t *testing.T) {
	e := newEnv(t, "")
	resp, err := e.in.Anonymous.Get(e.in.URL + "/acme/nope/directory")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown provisioner: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestACMERefusalsAreAudited: a refusal at the ACME front door is in the
// audit log — as the account that signed the request when the JWS verified,
// as anonymous otherwise.
func TestACMERefusalsAreAudited(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	c.post(c.url("newOrder"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "forbidden.test"}}}).
		wantProblem(t, http.StatusBadRequest, "rejectedIdentifier")
	ev := lastAuditEvent(t, e)
	if ev.Type != audit.TypeRequestDenied || ev.Actor != "acme:"+c.kid[strings.LastIndex(c.kid, "/")+1:] ||
		ev.Subject != "acme new-order" || ev.Detail["code"] != "rejectedIdentifier" || !strings.Contains(ev.Detail["reason"], "forbidden.test") {
		t.Fatalf("refused order's audit record: %+v", ev)
	}
	// Not signed by any account: anonymous.
	resp, err := e.in.Anonymous.Post(c.url("newOrder"), "application/jose+json", strings.NewReader(`{"protected":"e30","payload":"","signature":""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ev := lastAuditEvent(t, e); ev.Actor != "anonymous" || ev.Subject != "acme new-order" || ev.Outcome != "denied" {
		t.Fatalf("malformed JWS's audit record: %+v", ev)
	}
}

func lastAuditEvent(t *testing.T, e *env) audit.Event {
	t.Helper()
	head, _, err := e.in.Server.Store().AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := e.in.Server.Store().ListAudit(context.Background(), head-1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit: %v %v", evs, err)
	}
	return evs[0]
}

// TestFinalizeIsOneTransaction breaks the store at the moment the order is
// marked valid (a trigger refuses the update): the certificate must not be
// recorded without its order, and the order must not be left stuck — it is
// still ready, and finalizes once the store works again.
func TestFinalizeIsOneTransaction(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	o := c.newOrder("one.test")
	c.validateHTTP01(e, o)
	db, err := sql.Open("sqlite", filepath.Join(e.in.DataDir, sqlstore.DefaultFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER fail_finalize BEFORE UPDATE OF status ON acme_orders WHEN NEW.status = 'valid' BEGIN SELECT RAISE(ABORT, 'store down'); END`); err != nil {
		t.Fatal(err)
	}
	before := e.certCount(t)
	r := c.post(o.Finalize, map[string]any{"csr": csrFor(t, "one.test")})
	if r.status < 500 {
		t.Fatalf("finalize with the store failing: %d %s", r.status, r.body)
	}
	if n := e.certCount(t); n != before {
		t.Fatalf("a certificate was recorded without its order (%d → %d)", before, n)
	}
	var got rawOrder
	c.post(o.location, nil).json(t, &got)
	if got.Status != "ready" {
		t.Fatalf("order after the failed finalize is %q, want ready", got.Status)
	}
	if _, err := db.Exec(`DROP TRIGGER fail_finalize`); err != nil {
		t.Fatal(err)
	}
	r = c.post(o.Finalize, map[string]any{"csr": csrFor(t, "one.test")})
	r.json(t, &got)
	if r.status != http.StatusOK || got.Status != "valid" || got.Certificate == "" || e.certCount(t) != before+1 {
		t.Fatalf("finalize after the store recovered: %d %s", r.status, r.body)
	}
}

package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// finalizeWithKey completes the order with a CSR for names signed by key and
// returns the issued leaf.
func (c *rawClient) finalizeWithKey(e *env, o rawOrder, key *ecdsa.PrivateKey, names ...string) *x509.Certificate {
	c.t.Helper()
	c.validateHTTP01(e, o)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		c.t.Fatal(err)
	}
	var order rawOrder
	r := c.post(o.Finalize, map[string]any{"csr": base64.RawURLEncoding.EncodeToString(der)})
	r.json(c.t, &order)
	if order.Status != "valid" {
		c.t.Fatalf("finalize: %s", r.body)
	}
	block, _ := pem.Decode(c.post(order.Certificate, nil).body)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		c.t.Fatal(err)
	}
	return leaf
}

func TestOrderValidityWithinPolicy(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	notAfter := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	r := c.post(c.url("newOrder"), map[string]any{
		"identifiers": []map[string]string{{"type": "dns", "value": "short.test"}},
		"notAfter":    notAfter.Format(time.RFC3339),
	})
	if r.status != http.StatusCreated {
		t.Fatalf("newOrder with notAfter: %d %s", r.status, r.body)
	}
	var o rawOrder
	r.json(t, &o)
	o.location = r.header.Get("Location")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := c.finalizeWithKey(e, o, key, "short.test")
	if !leaf.NotAfter.Equal(notAfter) {
		t.Fatalf("notAfter %s, asked for %s", leaf.NotAfter, notAfter)
	}
	// Beyond the policy's maximum lifetime (168h by default): refused.
	c.post(c.url("newOrder"), map[string]any{
		"identifiers": []map[string]string{{"type": "dns", "value": "long.test"}},
		"notAfter":    time.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339),
	}).wantProblem(t, http.StatusBadRequest, "malformed")
	c.post(c.url("newOrder"), map[string]any{
		"identifiers": []map[string]string{{"type": "dns", "value": "bad.test"}},
		"notBefore":   "yesterday",
	}).wantProblem(t, http.StatusBadRequest, "malformed")
}

func TestRevokeByCertificateKey(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := c.finalizeWithKey(e, c.newOrder("revoke.test"), certKey, "revoke.test")
	payload := map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(leaf.Raw), "reason": 1}

	// Signed by a stranger's key (jwk): refused.
	stranger := e.rawClient(t, "acme")
	stranger.post(stranger.url("revokeCert"), payload).wantProblem(t, http.StatusForbidden, "unauthorized")
	// Another account (kid): refused.
	other := e.rawClient(t, "acme")
	other.register()
	other.post(other.url("revokeCert"), payload).wantProblem(t, http.StatusForbidden, "unauthorized")
	// A reason subscribers may not give.
	holder := e.rawClient(t, "acme")
	holder.key = certKey
	holder.post(holder.url("revokeCert"), map[string]any{"certificate": payload["certificate"], "reason": 6}).
		wantProblem(t, http.StatusBadRequest, "badRevocationReason")
	// Signed by the certificate's own key, as jwk, no account: revoked.
	if r := holder.post(holder.url("revokeCert"), payload); r.status != http.StatusOK {
		t.Fatalf("revoke by certificate key: %d %s", r.status, r.body)
	}
	rec, err := e.in.Server.Store().GetCertificate(t.Context(), serialOf(leaf))
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 1 {
		t.Fatalf("store after revoke: %+v %v", rec.Status, err)
	}
	holder.post(holder.url("revokeCert"), payload).wantProblem(t, http.StatusBadRequest, "alreadyRevoked")
}

func TestAccountUpdateAndOrdersList(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	var acct struct {
		Status  string   `json:"status"`
		Contact []string `json:"contact"`
		Orders  string   `json:"orders"`
	}
	c.post(c.kid, map[string]any{"contact": []string{"mailto:ops@example.test"}}).json(t, &acct)
	if len(acct.Contact) != 1 || acct.Contact[0] != "mailto:ops@example.test" {
		t.Fatalf("contact update: %+v", acct)
	}
	c.post(c.kid, map[string]any{"contact": []string{"tel:+1555"}}).wantProblem(t, http.StatusBadRequest, "unsupportedContact")
	first, second := c.newOrder("one.test"), c.newOrder("two.test")
	var list struct {
		Orders []string `json:"orders"`
	}
	c.post(acct.Orders, nil).json(t, &list)
	if len(list.Orders) != 2 || list.Orders[0] != first.location || list.Orders[1] != second.location {
		t.Fatalf("orders list %v, want %s then %s", list.Orders, first.location, second.location)
	}
	// Another account sees neither the list nor the orders.
	other := e.rawClient(t, "acme")
	other.register()
	other.post(acct.Orders, nil).wantProblem(t, http.StatusForbidden, "unauthorized")
	other.post(first.location, nil).wantProblem(t, http.StatusForbidden, "unauthorized")
	other.post(first.Authorizations[0], nil).wantProblem(t, http.StatusForbidden, "unauthorized")
	// Deactivation is final.
	c.post(c.kid, map[string]any{"status": "deactivated"}).json(t, &acct)
	if acct.Status != "deactivated" {
		t.Fatalf("deactivate: %+v", acct)
	}
	c.post(c.url("newOrder"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "three.test"}}}).
		wantProblem(t, http.StatusForbidden, "unauthorized")
}

// A challenge whose replica died while validating it (it stays processing
// in the store) is validated again by the leader once a validation could
// no longer be running, and the order goes on.
func TestValidationLeftProcessingIsRecovered(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	o := c.newOrder("recover.example.test")
	a := c.authz(o.Authorizations[0])
	var chURL, token string
	for _, ch := range a.Challenges {
		if ch.Type == "http-01" {
			chURL, token = ch.URL, ch.Token
		}
	}
	_ = e.h01.Present(context.Background(), "", token, c.keyAuth(token))
	// What the dead replica did: marked the challenge processing, and no more.
	parts := strings.Split(chURL, "/")
	authzID, challengeID := parts[len(parts)-2], parts[len(parts)-1]
	if err := e.in.Server.Store().StartACMEChallenge(context.Background(), authzID, challengeID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for c.authz(o.Authorizations[0]).Status != "valid" {
		if time.Now().After(deadline) {
			t.Fatalf("the challenge is still %+v", c.authz(o.Authorizations[0]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Not before a validation could have finished (the 5s timeout and 5s).
	if took := time.Since(start); took < 9*time.Second {
		t.Fatalf("validated again after %s, while the first validation could still be running", took)
	} else {
		t.Logf("validated again %s after it was left processing", took.Round(100*time.Millisecond))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if cert := c.finalizeWithKey(e, o, key, "recover.example.test"); cert.DNSNames[0] != "recover.example.test" {
		t.Fatalf("certificate for %v", cert.DNSNames)
	}
}

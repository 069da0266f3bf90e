package acme_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/meshpki/meshpki/internal/store"
)

// rawClient speaks ACME by hand, so that tests can send what no real client
// would: replayed nonces, wrong urls, other algorithms.
type rawClient struct {
	t    *testing.T
	http *http.Client
	dir  map[string]any
	key  *ecdsa.PrivateKey
	kid  string
}

func (e *env) rawClient(t *testing.T, prov string) *rawClient {
	t.Helper()
	c := &rawClient{t: t, http: e.in.Anonymous}
	resp, err := c.http.Get(e.directory(prov))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&c.dir); err != nil {
		t.Fatal(err)
	}
	c.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawClient) url(name string) string { return c.dir[name].(string) }

func (c *rawClient) nonce() string {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodHead, c.url("newNonce"), nil)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		c.t.Fatal("newNonce gave no Replay-Nonce")
	}
	return n
}

// jws builds a flattened JWS. header members in extra override the
// defaults (alg ES256, nonce, url, and kid or, before registration, jwk).
func (c *rawClient) jws(url string, payload any, nonce string, extra map[string]any) []byte {
	c.t.Helper()
	h := map[string]any{"alg": "ES256", "nonce": nonce, "url": url}
	if c.kid != "" {
		h["kid"] = c.kid
	} else {
		h["jwk"] = jose.JSONWebKey{Key: c.key.Public()}
	}
	for k, v := range extra {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	prot, err := json.Marshal(h)
	if err != nil {
		c.t.Fatal(err)
	}
	var body []byte
	if payload != nil {
		if body, err = json.Marshal(payload); err != nil {
			c.t.Fatal(err)
		}
	}
	p64 := base64.RawURLEncoding.EncodeToString(prot)
	b64 := base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(p64 + "." + b64))
	r, s, err := ecdsa.Sign(rand.Reader, c.key, digest[:])
	if err != nil {
		c.t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	out, _ := json.Marshal(map[string]string{"protected": p64, "payload": b64, "signature": base64.RawURLEncoding.EncodeToString(sig)})
	return out
}

type rawResponse struct {
	status  int
	header  http.Header
	body    []byte
	problem struct {
		Type        string `json:"type"`
		Detail      string `json:"detail"`
		Subproblems []struct {
			Type       string            `json:"type"`
			Identifier map[string]string `json:"identifier"`
		} `json:"subproblems"`
		Algorithms []string `json:"algorithms"`
	}
}

func (c *rawClient) send(url string, body []byte) *rawResponse {
	c.t.Helper()
	resp, err := c.http.Post(url, "application/jose+json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := &rawResponse{status: resp.StatusCode, header: resp.Header}
	r.body, _ = io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		if err := json.Unmarshal(r.body, &r.problem); err != nil {
			c.t.Fatalf("problem document is not JSON: %s", r.body)
		}
	}
	if resp.Header.Get("Replay-Nonce") == "" {
		c.t.Errorf("response %d from %s has no Replay-Nonce", resp.StatusCode, url)
	}
	return r
}

// post signs payload (nil for POST-as-GET) for url with a fresh nonce.
func (c *rawClient) post(url string, payload any) *rawResponse {
	return c.send(url, c.jws(url, payload, c.nonce(), nil))
}

func (r *rawResponse) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
}

func (r *rawResponse) wantProblem(t *testing.T, status int, typ string) {
	t.Helper()
	if r.status != status || r.problem.Type != "urn:ietf:params:acme:error:"+typ {
		t.Fatalf("got %d %q (%s), want %d %s", r.status, r.problem.Type, r.problem.Detail, status, typ)
	}
}

func (c *rawClient) register() {
	c.t.Helper()
	r := c.post(c.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
	if r.status != http.StatusCreated {
		c.t.Fatalf("newAccount: %d %s", r.status, r.body)
	}
	c.kid = r.header.Get("Location")
}

type rawOrder struct {
	Status         string   `json:"status"`
	Authorizations []string `json:"authorizations"`
	Finalize       string   `json:"finalize"`
	Certificate    string   `json:"certificate"`
	location       string
}

func (c *rawClient) newOrder(names ...string) rawOrder {
	c.t.Helper()
	var ids []map[string]string
	for _, n := range names {
		ids = append(ids, map[string]string{"type": "dns", "value": n})
	}
	r := c.post(c.url("newOrder"), map[string]any{"identifiers": ids})
	if r.status != http.StatusCreated {
		c.t.Fatalf("newOrder: %d %s", r.status, r.body)
	}
	var o rawOrder
	r.json(c.t, &o)
	o.location = r.header.Get("Location")
	return o
}

type rawAuthz struct {
	Status     string `json:"status"`
	Challenges []struct {
		Type   string          `json:"type"`
		URL    string          `json:"url"`
		Token  string          `json:"token"`
		Status string          `json:"status"`
		Error  json.RawMessage `json:"error"`
	} `json:"challenges"`
}

func (c *rawClient) authz(url string) rawAuthz {
	c.t.Helper()
	var a rawAuthz
	c.post(url, nil).json(c.t, &a)
	return a
}

func (c *rawClient) keyAuth(token string) string {
	tp, err := (&jose.JSONWebKey{Key: c.key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		c.t.Fatal(err)
	}
	return token + "." + base64.RawURLEncoding.EncodeToString(tp)
}

// validateHTTP01 presents and answers the http-01 challenge of each of the
// order's authorizations.
func (c *rawClient) validateHTTP01(e *env, o rawOrder) {
	c.t.Helper()
	for _, u := range o.Authorizations {
		a := c.authz(u)
		for _, ch := range a.Challenges {
			if ch.Type != "http-01" {
				continue
			}
			_ = e.h01.Present(context.Background(), "", ch.Token, c.keyAuth(ch.Token))
			r := c.post(ch.URL, map[string]any{})
			var got struct{ Status string }
			r.json(c.t, &got)
			if got.Status != "valid" {
				c.t.Fatalf("http-01 challenge: %s", r.body)
			}
		}
	}
}

func csrFor(t *testing.T, names ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}, DNSNames: names}, k)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(der)
}

func (e *env) certCount(t *testing.T) int {
	t.Helper()
	page, err := e.in.Server.Store().ListCertificates(context.Background(), store.CertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Certificates)
}

// TestAccountUpdateIgnoresOtherStatuses: RFC 8555, section 7.3.2 — the
// server MUST ignore a status other than "deactivated", and fields it does
// not recognise (acmez sends "status":"valid" with a contact update).
func TestAccountUpdateIgnoresOtherStatuses(t *testing.T) {
	e := newEnv(t, "")
	c := e.rawClient(t, "acme")
	c.register()
	for _, payload := range []map[string]any{
		{"status": "valid", "contact": []string{"mailto:ops@example.test"}},
		{"status": "revoked", "termsOfServiceAgreed": true, "orders": "ignored"},
	} {
		r := c.post(c.kid, payload)
		var acct struct {
			Status  string   `json:"status"`
			Contact []string `json:"contact"`
		}
		r.json(t, &acct)
		if r.status != http.StatusOK || acct.Status != "valid" || len(acct.Contact) != 1 {
			t.Fatalf("update %v: %d %s", payload, r.status, r.body)
		}
	}
	// "deactivated" still deactivates.
	r := c.post(c.kid, map[string]any{"status": "deactivated"})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"deactivated"`) {
		t.Fatalf("deactivate: %d %s", r.status, r.body)
	}
}

// TestNoACMEProblemIsA401: a 401 needs a WWW-Authenticate challenge, which
// ACME does not have; externalAccountRequired is a 403.
func TestNoACMEProblemIsA401(t *testing.T) {
	e := newEnv(t, "")
	e.addProvisioner(t, "eab", true)
	c := e.rawClient(t, "eab")
	r := c.post(c.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
	r.wantProblem(t, http.StatusForbidden, "externalAccountRequired")
}

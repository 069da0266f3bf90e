package api_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// operatorClient adds an operator with role (and provisioners) and returns
// an HTTPS client presenting its credential.
func operatorClient(t *testing.T, in *servertest.Instance, name string, role store.Role, provs ...string) *http.Client {
	t.Helper()
	key, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, issued, err := in.Server.Operators().Add(context.Background(), operator.AddRequest{Name: name, Role: role, Provisioners: provs, PublicKey: key.Public(), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{issued.Certificate.Raw}
	for _, c := range issued.Chain {
		chain = append(chain, c.Raw)
	}
	return in.Client(&tls.Certificate{Certificate: chain, PrivateKey: key})
}

// TestRoleMatrix: every endpoint checks the caller's role, and each role
// reaches exactly its column — admins everything; operators reads and
// issuing for the provisioners they were granted (tokens, EAB keys,
// entries their spiffe provisioners allow, revoking those provisioners'
// certificates, scan reports); auditors reads and the audit log; viewers
// reads. Every other cell is a 403 "forbidden".
func TestRoleMatrix(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, p := range []struct{ name, typ, body string }{
		{"web", "token", `{"allow_dns":["*.example.internal"]}`},
		{"other", "token", `{"allow_dns":["*.other.internal"]}`},
		{"apps", "spiffe", `{"allow_uri":["spiffe://test.internal/app/"]}`},
		{"infra", "spiffe", `{"allow_uri":["spiffe://test.internal/infra/"]}`},
		{"acme", "acme", `{"allow_dns":["*.example.internal"]}`},
		{"doomed", "token", `{"allow_dns":["*.example.internal"]}`},
	} {
		if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/provisioners", fmt.Sprintf(`{"name":%q,"type":%q,"policy":%s}`, p.name, p.typ, p.body), nil); status != http.StatusCreated {
			t.Fatalf("provisioner %s: %d %s", p.name, status, raw)
		}
	}
	clients := map[store.Role]*http.Client{
		store.RoleAdmin:    operatorClient(t, in, "second-admin", store.RoleAdmin),
		store.RoleOperator: operatorClient(t, in, "ops", store.RoleOperator, "web", "apps", "acme"),
		store.RoleAuditor:  operatorClient(t, in, "aud", store.RoleAuditor),
		store.RoleViewer:   operatorClient(t, in, "view", store.RoleViewer),
	}
	// Certificates to revoke: one of "web" and one of "other" per role.
	issue := func(prov, name string) string {
		_, csr := newCSR(t, keys.ECP256, name, name)
		var out struct {
			Serial string `json:"serial"`
		}
		if status, raw := do(t, in.Anonymous, "POST", in.URL+"/v1/sign", map[string]any{"csr": csr, "token": newToken(t, in, prov, name, name)}, &out); status != http.StatusCreated {
			t.Fatalf("sign: %d %s", status, raw)
		}
		return out.Serial
	}

	A, O, U, V := store.RoleAdmin, store.RoleOperator, store.RoleAuditor, store.RoleViewer
	all := []store.Role{A, O, U, V}
	type cell struct {
		method, path string
		body         func(role store.Role) string
		allowed      []store.Role
	}
	none := func(store.Role) string { return "" }
	fixed := func(s string) func(store.Role) string { return func(store.Role) string { return s } }
	cells := []cell{
		{"GET", "/v1/certificates", none, all},
		{"GET", "/v1/provisioners", none, all},
		{"GET", "/v1/provisioners/web", none, all},
		{"POST", "/v1/provisioners", func(r store.Role) string {
			return fmt.Sprintf(`{"name":"new-%s","type":"token","policy":{"allow_dns":["a.example.internal"]}}`, r)
		}, []store.Role{A}},
		{"PUT", "/v1/provisioners/other", fixed(`{"type":"token","policy":{"allow_dns":["*.other.internal"]}}`), []store.Role{A}},
		{"DELETE", "/v1/provisioners/doomed", none, []store.Role{A}},
		{"POST", "/v1/policy/check", fixed(`{"provisioner":"web","sans":["a.example.internal"]}`), all},
		{"POST", "/v1/tokens", fixed(`{"provisioner":"web","subject":"a.example.internal","sans":["a.example.internal"]}`), []store.Role{A, O}},
		{"POST", "/v1/tokens", fixed(`{"provisioner":"other","subject":"a.other.internal","sans":["a.other.internal"]}`), []store.Role{A}},
		{"POST", "/v1/tokens", fixed(`{"join":true,"spiffe_id":"spiffe://test.internal/node/n1"}`), []store.Role{A}},
		{"GET", "/v1/entries", none, all},
		{"POST", "/v1/entries", func(r store.Role) string {
			return fmt.Sprintf(`{"spiffe_id":"spiffe://test.internal/app/%s","parent":"spiffe://test.internal/node/n1","selectors":["unix:uid:1"]}`, r)
		}, []store.Role{A, O}},
		{"POST", "/v1/entries", func(r store.Role) string {
			return fmt.Sprintf(`{"spiffe_id":"spiffe://test.internal/infra/%s","parent":"spiffe://test.internal/node/n1","selectors":["unix:uid:1"]}`, r)
		}, []store.Role{A}},
		{"GET", "/v1/nodes", none, all},
		{"POST", "/v1/nodes/evict", fixed(`{"spiffe_id":"spiffe://test.internal/node/none"}`), []store.Role{A}},
		{"GET", "/v1/admins", none, []store.Role{A, U}},
		{"POST", "/v1/admins", fixed(`{"name":"x","role":"viewer","csr":""}`), []store.Role{A}},
		{"DELETE", "/v1/admins/nobody", none, []store.Role{A}},
		{"GET", "/v1/audit?limit=5", none, []store.Role{A, U}},
		{"POST", "/v1/acme/eab", fixed(`{"provisioner":"acme"}`), []store.Role{A, O}},
		{"GET", "/v1/acme/eab?provisioner=acme", none, all},
		{"POST", "/v1/revoke/matching", fixed(`{"name":"nothing.example.internal","reason":"superseded"}`), []store.Role{A}},
		{"POST", "/v1/revoke", func(store.Role) string {
			return fmt.Sprintf(`{"serial":%q,"reason":"superseded"}`, issue("web", "r.example.internal"))
		}, []store.Role{A, O}},
		{"POST", "/v1/revoke", func(store.Role) string {
			return fmt.Sprintf(`{"serial":%q,"reason":"superseded"}`, issue("other", "r.other.internal"))
		}, []store.Role{A}},
		{"GET", "/v1/inventory", none, all},
		{"POST", "/v1/inventory/reports", fixed(`{"results":[]}`), []store.Role{A, O}},
		{"GET", "/v1/scan/schedules", none, all},
		{"POST", "/v1/scan/schedules", func(r store.Role) string {
			return fmt.Sprintf(`{"name":"s-%s","targets":["127.0.0.1:1"],"every":"1h"}`, r)
		}, []store.Role{A}},
		{"GET", "/v1/alerts", none, all},
		{"GET", "/v1/alerts/channels", none, all},
		{"POST", "/v1/alerts/channels", func(r store.Role) string {
			return fmt.Sprintf(`{"name":"c-%s","kind":"webhook","url":"https://alerts.example.internal/hook"}`, r)
		}, []store.Role{A}},
		{"GET", "/v1/alerts/rules", none, all},
		{"POST", "/v1/ui/logins", fixed(`{}`), []store.Role{A}},
	}
	for _, c := range cells {
		for _, role := range all {
			body := c.body(role)
			var b any
			if body != "" {
				b = body
			}
			status, raw := do(t, clients[role], c.method, in.URL+c.path, b, nil)
			want := false
			for _, r := range c.allowed {
				want = want || r == role
			}
			denied := status == http.StatusForbidden && strings.Contains(string(raw), `"forbidden"`)
			switch {
			case want && (denied || status == http.StatusUnauthorized):
				t.Errorf("%s %s as %s: %d %s, want it allowed", c.method, c.path, role, status, raw)
			case !want && !denied:
				t.Errorf("%s %s as %s: %d %s, want 403 forbidden", c.method, c.path, role, status, raw)
			}
		}
	}

	// The matrix in the package is the one the endpoints follow.
	for role, perms := range map[store.Role][]operator.Permission{A: {operator.Read, operator.Audit, operator.Issue, operator.Administer},
		O: {operator.Read, operator.Issue}, U: {operator.Read, operator.Audit}, V: {operator.Read}} {
		for _, p := range []operator.Permission{operator.Read, operator.Audit, operator.Issue, operator.Administer} {
			want := false
			for _, q := range perms {
				want = want || q == p
			}
			if operator.Allows(role, p) != want {
				t.Errorf("Allows(%s, %s) = %v", role, p, !want)
			}
		}
	}

	// Refusals of the role are audited.
	var page struct {
		Events []struct {
			Type, Actor string
			Detail      map[string]string
		} `json:"events"`
	}
	if status, raw := do(t, in.Admin, "GET", in.URL+"/v1/audit?limit=1000", nil, &page); status != http.StatusOK {
		t.Fatalf("audit: %d %s", status, raw)
	}
	found := false
	for _, ev := range page.Events {
		if ev.Type == "request.denied" && strings.Contains(ev.Actor, "/meshpki/admin/view") && ev.Detail["role"] == "viewer" {
			found = true
		}
	}
	if !found {
		t.Error("no audited refusal of the viewer")
	}
}

// TestRetiredOperatorIsRefused: a retired operator's credential is refused
// at once, its renewal too, and its certificates are revoked; the last
// active admin cannot be retired, and the bootstrap admin can once another
// admin exists.
func TestRetiredOperatorIsRefused(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ops := operatorClient(t, in, "ops", store.RoleViewer)
	if status, raw := do(t, ops, "GET", in.URL+"/v1/certificates", nil, nil); status != http.StatusOK {
		t.Fatalf("before: %d %s", status, raw)
	}
	var revoked struct {
		Revoked []string `json:"revoked"`
	}
	if status, raw := do(t, in.Admin, "DELETE", in.URL+"/v1/admins/ops", nil, &revoked); status != http.StatusOK || len(revoked.Revoked) != 1 {
		t.Fatalf("retire: %d %s", status, raw)
	}
	status, raw := do(t, ops, "GET", in.URL+"/v1/certificates", nil, nil)
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Fatalf("a retired operator: %d %s", status, raw)
	}
	if status, _ := do(t, ops, "POST", in.URL+"/v1/renew", nil, nil); status < 400 || status >= 500 {
		t.Fatalf("a retired operator renewed: %d", status)
	}
	if status, raw := do(t, in.Admin, "DELETE", in.URL+"/v1/admins/bootstrap", nil, nil); status != http.StatusConflict || !strings.Contains(string(raw), "last active admin") {
		t.Fatalf("retiring the last admin: %d %s", status, raw)
	}
	second := operatorClient(t, in, "second", store.RoleAdmin)
	if status, raw := do(t, second, "DELETE", in.URL+"/v1/admins/bootstrap", nil, nil); status != http.StatusOK {
		t.Fatalf("retiring the bootstrap admin: %d %s", status, raw)
	}
	if status, _ := do(t, in.Admin, "GET", in.URL+"/v1/certificates", nil, nil); status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Fatalf("the retired bootstrap credential still works: %d", status)
	}
	var list struct {
		Operators []struct {
			Name      string  `json:"name"`
			RetiredAt *string `json:"retired_at"`
		} `json:"operators"`
	}
	if status, raw := do(t, second, "GET", in.URL+"/v1/admins", nil, &list); status != http.StatusOK {
		t.Fatalf("list: %d %s", status, raw)
	}
	b, _ := json.Marshal(list)
	if len(list.Operators) != 3 || list.Operators[0].Name != "bootstrap" || list.Operators[0].RetiredAt == nil || list.Operators[2].Name != "second" {
		t.Errorf("operators: %s", b)
	}
}

// externalPKI is another CA, trusted by the server for operators only.
type externalPKI struct {
	root *x509.Certificate
	key  crypto.Signer
}

func newExternalPKI(t *testing.T) *externalPKI {
	t.Helper()
	key, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Corp Ops CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &externalPKI{root: root, key: key}
}

// client returns an HTTPS client presenting a certificate of the external
// CA with subject cn (O=Corp) and, if set, a SPIFFE ID.
func (p *externalPKI) client(t *testing.T, in *servertest.Instance, cn, spiffeID string) *http.Client {
	t.Helper()
	return p.clientWithSerial(t, in, cn, spiffeID, big.NewInt(time.Now().UnixNano()))
}

func (p *externalPKI) clientWithSerial(t *testing.T, in *servertest.Instance, cn, spiffeID string, serial *big.Int) *http.Client {
	t.Helper()
	key, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Corp"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if spiffeID != "" {
		u, _ := url.Parse(spiffeID)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	return in.Client(&tls.Certificate{Certificate: [][]byte{der, p.root.Raw}, PrivateKey: key})
}

// TestOperatorsFromAnotherCA: with --operator-ca, operators are enrolled by
// the SPIFFE ID or subject of certificates another CA issues; the role
// decides as for any operator; a certificate of that CA that no operator
// was enrolled for is refused, as is one used where a certificate of this
// CA is required (renewal), even one with the serial of a certificate this
// CA issued; retiring refuses it at once.
func TestOperatorsFromAnotherCA(t *testing.T) {
	ext := newExternalPKI(t)
	in := servertest.Start(t, servertest.Options{OperatorCAs: []*x509.Certificate{ext.root}})
	for _, body := range []string{
		`{"name":"carol","role":"auditor","identity":"spiffe://corp.example/ops/carol"}`,
		`{"name":"dave","role":"viewer","identity":"subject:CN=dave,O=Corp"}`,
	} {
		if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/admins", body, nil); status != http.StatusCreated {
			t.Fatalf("enroll %s: %d %s", body, status, raw)
		}
	}
	for _, bad := range []string{
		`{"name":"eve","role":"admin","identity":"spiffe://test.internal/ops/eve"}`,
		`{"name":"eve","role":"admin","identity":"eve@corp"}`,
		`{"name":"eve","role":"admin","identity":"spiffe://corp.example/ops/carol"}`,
	} {
		if status, raw := do(t, in.Admin, "POST", in.URL+"/v1/admins", bad, nil); status != http.StatusBadRequest && status != http.StatusConflict {
			t.Errorf("enroll %s: %d %s, want a refusal", bad, status, raw)
		}
	}
	carol := ext.client(t, in, "carol", "spiffe://corp.example/ops/carol")
	dave := ext.client(t, in, "dave", "")
	mallory := ext.client(t, in, "mallory", "spiffe://corp.example/ops/mallory")
	for _, c := range []struct {
		who    string
		client *http.Client
		method string
		path   string
		want   int
	}{
		{"carol", carol, "GET", "/v1/audit?limit=3", http.StatusOK},
		{"carol", carol, "GET", "/v1/certificates", http.StatusOK},
		{"carol", carol, "POST", "/v1/provisioners", http.StatusForbidden},
		{"dave", dave, "GET", "/v1/certificates", http.StatusOK},
		{"dave", dave, "GET", "/v1/audit", http.StatusForbidden},
		{"mallory", mallory, "GET", "/v1/certificates", http.StatusForbidden},
		{"carol", carol, "POST", "/v1/renew", http.StatusUnauthorized},
	} {
		var body any
		if c.method == "POST" && c.path == "/v1/provisioners" {
			body = `{"name":"x","type":"token","policy":{"allow_dns":["a.example.internal"]}}`
		}
		if status, raw := do(t, c.client, c.method, in.URL+c.path, body, nil); status != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.who, c.method, c.path, status, raw, c.want)
		}
	}
	// The operator CA issues a certificate with the serial of this CA's
	// bootstrap admin credential: it is not that credential.
	adminLeaf, err := x509.ParseCertificate(in.AdminCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	forged := ext.clientWithSerial(t, in, "meshpki admin", "spiffe://corp.example/ops/carol", adminLeaf.SerialNumber)
	if status, raw := do(t, forged, "POST", in.URL+"/v1/renew", nil, nil); status != http.StatusUnauthorized || !strings.Contains(string(raw), "not the certificate this CA issued") {
		t.Errorf("renewal with a forged serial: %d %s", status, raw)
	}
	var revoked struct {
		Revoked []string `json:"revoked"`
	}
	if status, raw := do(t, in.Admin, "DELETE", in.URL+"/v1/admins/carol", nil, &revoked); status != http.StatusOK || len(revoked.Revoked) != 0 {
		t.Fatalf("retire carol: %d %s", status, raw)
	}
	if status, raw := do(t, carol, "GET", in.URL+"/v1/certificates", nil, nil); status != http.StatusForbidden || !strings.Contains(string(raw), "retired") {
		t.Errorf("a retired enrolled operator: %d %s", status, raw)
	}
}

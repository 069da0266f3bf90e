package nodeapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

func namedCSR(t testing.TB, cn string, dns ...string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestDeclaredCertificatesFollowNodeGrants: a node provisioner issues to
// the nodes it names the names its policy allows, decided at each
// issuance and audited; a name outside the grant, a node it does not name,
// a provisioner of another type, and a renewal over /v1/renew (without the
// node) are refused and audited, and a provisioner changed to drop the node
// stops it at once.
func TestDeclaredCertificatesFollowNodeGrants(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	web := attestedClient(t, in, "spiffe://test.internal/node/web/1")
	db := attestedClient(t, in, "spiffe://test.internal/node/db/1")
	grant := store.Provisioner{Name: "web-hosts", Type: store.ProvisionerNode,
		Nodes:  []string{"spiffe://test.internal/node/web/*"},
		Policy: policy.Policy{AllowDNS: []string{"*.web.test.internal"}, MaxTTL: policy.Duration(24 * time.Hour)}}
	if _, err := in.Server.Provisioners().Add(ctx, provisioner.Change{Provisioner: grant, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Server.Provisioners().Add(ctx, provisioner.Change{Provisioner: store.Provisioner{Name: "tokens", Type: store.ProvisionerToken, Policy: grant.Policy}, Actor: "test"}); err != nil {
		t.Fatal(err)
	}

	resp, err := web.SignDeclared(ctx, &nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "a.web.test.internal", "a.web.test.internal"), TTL: time.Hour, Manifest: "/etc/meshpki/manifests/web.yaml: web"})
	if err != nil {
		t.Fatalf("a granted name: %v", err)
	}
	leaf, err := x509.ParseCertificate(resp.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, r := range resp.Roots {
		c, _ := x509.ParseCertificate(r)
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, d := range resp.Chain[1:] {
		c, _ := x509.ParseCertificate(d)
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "a.web.test.internal"}); err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got > time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, asked for 1h", got)
	}
	ev := lastAudit(t, in)
	if ev.Type != audit.TypeCertificateIssued || ev.Actor != "node:spiffe://test.internal/node/web/1" || ev.Detail["provisioner"] != "web-hosts" ||
		ev.Detail["manifest"] != "/etc/meshpki/manifests/web.yaml: web" || ev.Detail["node"] != "spiffe://test.internal/node/web/1" {
		t.Fatalf("the issuance's audit record: %+v", ev)
	}

	refused := []struct {
		name   string
		client *nodeapi.Client
		req    nodeapi.DeclaredRequest
		want   string
		rule   string // the deciding rule the audit record names, if any
	}{
		{"a name outside the grant", web, nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "", "db.internal")}, "denies", `default deny`},
		{"a node the provisioner does not name", db, nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "", "a.web.test.internal")}, "is not one of the nodes", "nodes"},
		{"a provisioner of another type", web, nodeapi.DeclaredRequest{Provisioner: "tokens", CSR: namedCSR(t, "", "a.web.test.internal")}, "node provisioners only", "type token"},
		{"no such provisioner", web, nodeapi.DeclaredRequest{Provisioner: "nope", CSR: namedCSR(t, "", "a.web.test.internal")}, "no provisioner", ""},
		{"a common name not among the names", web, nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "root", "a.web.test.internal")}, "common name", ""},
		{"a lifetime over the maximum", web, nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "", "a.web.test.internal"), TTL: 48 * time.Hour}, "maximum", "max_ttl 24h0m0s"},
		{"a malformed CSR", web, nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: []byte("junk")}, "CSR", ""},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := countIssued(t, in)
			_, err := tc.client.SignDeclared(ctx, &tc.req)
			if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
				t.Fatalf("got %v, want a refusal", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal %q does not say %q", err, tc.want)
			}
			ev := lastAudit(t, in)
			if ev.Type != audit.TypeRequestDenied || !strings.HasPrefix(ev.Actor, "node:spiffe://test.internal/node/") {
				t.Errorf("refusal not audited: %+v", ev)
			}
			if tc.rule != "" && ev.Detail["rule"] != tc.rule {
				t.Errorf("audited rule %q, want %q", ev.Detail["rule"], tc.rule)
			}
			if after := countIssued(t, in); after != before {
				t.Errorf("a refused request issued a certificate (%d → %d)", before, after)
			}
		})
	}

	// The certificate cannot renew itself without its node.
	if _, err := in.Server.Authority().Renew(ctx, ca.RenewRequest{Current: leaf}); err == nil || !strings.Contains(err.Error(), "only by the nodes it names") {
		t.Fatalf("renewal without the node: %v", err)
	}

	// The grant narrowed to another node applies at the next issuance.
	grant.Nodes = []string{"spiffe://test.internal/node/web/2"}
	if _, err := in.Server.Provisioners().Update(ctx, provisioner.Change{Provisioner: grant, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := web.SignDeclared(ctx, &nodeapi.DeclaredRequest{Provisioner: "web-hosts", CSR: namedCSR(t, "", "a.web.test.internal")}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the grant moved to another node: %v", err)
	}
}

func countIssued(t *testing.T, in *servertest.Instance) int {
	t.Helper()
	page, err := in.Server.Store().ListCertificates(context.Background(), store.CertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Certificates)
}

// TestNodeProvisionerNeedsNodes: a node provisioner names its nodes, each a
// node SPIFFE ID of the trust domain (or a prefix, or a selector), and no
// other type takes nodes.
func TestNodeProvisionerNeedsNodes(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, tc := range []struct {
		name  string
		typ   store.ProvisionerType
		nodes []string
		want  string
	}{
		{"bad-no-nodes", store.ProvisionerNode, nil, "at least one node"},
		{"bad-foreign-domain", store.ProvisionerNode, []string{"spiffe://other.internal/node/a"}, "trust domain"},
		{"bad-reserved", store.ProvisionerNode, []string{"spiffe://test.internal/meshpki/admin/*"}, "reserved"},
		{"bad-selector", store.ProvisionerNode, []string{"web-1"}, "neither a SPIFFE ID"},
		{"bad-token-with-nodes", store.ProvisionerToken, []string{"spiffe://test.internal/node/a"}, "only to node provisioners"},
	} {
		_, err := in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{Name: tc.name, Type: tc.typ, Nodes: tc.nodes,
			Policy: policy.Policy{AllowDNS: []string{"*.internal"}}}, Actor: "test"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := in.Server.Provisioners().Add(context.Background(), provisioner.Change{Provisioner: store.Provisioner{Name: "good", Type: store.ProvisionerNode,
		Nodes: []string{"spiffe://test.internal/node/a", "spiffe://test.internal/node/web/*", "x509pop:subject:cn:web-1"}}, Actor: "test"}); err != nil {
		t.Errorf("good node provisioner: %v", err)
	}
}

package nodeapi_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// TestSVIDsObeyPolicyAtIssuance: an entry allowed when it was made stops
// minting, X.509 and JWT alike, once a spiffe provisioner no longer allows
// it; each refusal is audited, and a JWT-SVID that is minted is audited too.
func TestSVIDsObeyPolicyAtIssuance(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	node := "spiffe://test.internal/node/p1"
	c := attestedClient(t, in, node)
	e, err := in.Server.Registration().CreateEntry(ctx, store.Entry{SPIFFEID: "spiffe://test.internal/legacy/web", Parent: node, Selectors: []string{"unix:uid:1"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	mint := func() nodeapi.MintResult {
		t.Helper()
		resp, err := c.MintX509SVIDs(ctx, &nodeapi.MintRequest{Items: []nodeapi.MintItem{{EntryID: e.ID, CSR: newCSR(t)}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Items[0]
	}
	if r := mint(); r.Error != "" {
		t.Fatalf("mint before tightening: %s", r.Error)
	}
	jwt, err := c.MintJWTSVID(ctx, &nodeapi.JWTRequest{EntryID: e.ID, Audience: []string{"db"}})
	if err != nil || jwt.Token == "" {
		t.Fatalf("JWT-SVID before tightening: %v", err)
	}
	if ev := lastAudit(t, in); ev.Type != audit.TypeJWTSVIDIssued || ev.Subject != e.SPIFFEID || ev.Detail["entry"] != e.ID || ev.Detail["audience"] != "db" ||
		strings.Contains(strings.Join(mapValues(ev.Detail), " "), jwt.Token) {
		t.Fatalf("the JWT-SVID's audit record: %+v", ev)
	}

	// Tighten: only spiffe://test.internal/app/ may exist now.
	if _, err := in.Server.Provisioners().Add(ctx, provisioner.Change{Provisioner: store.Provisioner{Name: "apps", Type: "spiffe", Policy: policy.Policy{AllowURI: []string{"spiffe://test.internal/app/"}}}, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if r := mint(); !strings.Contains(r.Error, "no spiffe provisioner allows") || len(r.Chain) != 0 {
		t.Fatalf("mint after tightening: %+v", r)
	}
	if ev := lastAudit(t, in); ev.Type != audit.TypeRequestDenied || ev.Subject != e.SPIFFEID {
		t.Fatalf("the refusal's audit record: %+v", ev)
	}
	if _, err := c.MintJWTSVID(ctx, &nodeapi.JWTRequest{EntryID: e.ID, Audience: []string{"db"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("JWT-SVID after tightening: %v", err)
	}
}

func lastAudit(t *testing.T, in *servertest.Instance) audit.Event {
	t.Helper()
	head, _, err := in.Server.Store().AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := in.Server.Store().ListAudit(context.Background(), head-1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit: %v %v", evs, err)
	}
	return evs[0]
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestAttestationIsOneTransaction breaks the store as the node record is
// written: no node SVID is recorded without its node, and the join token is
// not spent — the same token attests once the store works again.
func TestAttestationIsOneTransaction(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	node := "spiffe://test.internal/node/tx"
	g, err := in.Server.Registration().CreateJoinToken(ctx, node, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(in.DataDir, sqlstore.DefaultFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER fail_node BEFORE INSERT ON spiffe_nodes BEGIN SELECT RAISE(ABORT, 'store down'); END`); err != nil {
		t.Fatal(err)
	}
	anon, err := nodeapi.Dial(in.URL, in.Roots, func() *tls.Certificate { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	countCerts := func() int {
		page, err := in.Server.Store().ListCertificates(ctx, store.CertFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Certificates)
	}
	before := countCerts()
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: newCSR(t)}); status.Code(err) != codes.Unavailable {
		t.Fatalf("attest with the store failing: %v", err)
	}
	if n := countCerts(); n != before {
		t.Fatalf("a node SVID was recorded without its node (%d → %d)", before, n)
	}
	if _, err := db.Exec(`DROP TRIGGER fail_node`); err != nil {
		t.Fatal(err)
	}
	resp, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: newCSR(t)})
	if err != nil || resp.SPIFFEID != node {
		t.Fatalf("attest with the same token once the store recovered: %v", err)
	}
	n, err := in.Server.Store().GetNode(ctx, node)
	if err != nil || n.CertSerial == "" {
		t.Fatalf("node record: %+v %v", n, err)
	}
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: newCSR(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the token attested twice: %v", err)
	}
}

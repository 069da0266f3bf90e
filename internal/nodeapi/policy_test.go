package nodeapi_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// TestSVIDsObeyPolicyAtIssuance: an entry allowed when it was made stops
// minting, X.509 and JWT alike, once a spiffe provisioner no longer allows
// it; each refusal is audited, and a JWT-SVID that is minted is audited too.
func TestSVIDsObeyPolicyAtIssuance(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	auth := in.Server.Authority()
	node := "spiffe://test.internal/node/p1"
	c := attestedClient(t, in, node)
	e, err := auth.CreateEntry(ctx, store.Entry{SPIFFEID: "spiffe://test.internal/legacy/web", Parent: node, Selectors: []string{"unix:uid:1"}}, "test")
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
	if ev := lastAudit(t, in); ev.Type != ca.TypeJWTSVIDIssued || ev.Subject != e.SPIFFEID || ev.Detail["entry"] != e.ID || ev.Detail["audience"] != "db" ||
		strings.Contains(strings.Join(mapValues(ev.Detail), " "), jwt.Token) {
		t.Fatalf("the JWT-SVID's audit record: %+v", ev)
	}

	// Tighten: only spiffe://test.internal/app/ may exist now.
	if _, err := auth.AddProvisioner(ctx, ca.ProvisionerChange{Provisioner: store.Provisioner{Name: "apps", Type: "spiffe", Policy: policy.Policy{AllowURI: []string{"spiffe://test.internal/app/"}}}, Actor: "test"}); err != nil {
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

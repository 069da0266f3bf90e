package nodeapi_test

import (
	"context"
	"crypto/tls"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

func TestNodeAPIRefusesWhatIsNotANodeSVID(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	req := &nodeapi.MintRequest{Items: []nodeapi.MintItem{{EntryID: "x", CSR: newCSR(t)}}}

	// No client certificate.
	anon, err := nodeapi.Dial(in.URL, in.Roots, func() *tls.Certificate { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.MintX509SVIDs(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no certificate: %v", err)
	}
	// The admin certificate is this CA's, but not a node SVID.
	admin, err := nodeapi.Dial(in.URL, in.Roots, func() *tls.Certificate { return &in.AdminCert })
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.MintX509SVIDs(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("admin certificate: %v", err)
	}
	// A bad or replayed join token.
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: "nope", CSR: newCSR(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad join token: %v", err)
	}
	node := "spiffe://test.internal/node/n1"
	g, err := in.Server.Registration().CreateJoinToken(ctx, node, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: newCSR(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g.Token, CSR: newCSR(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("replayed join token: %v", err)
	}

	// A node may mint only the entries whose parent is itself.
	c := attestedClient(t, in, "spiffe://test.internal/node/n2")
	mine, err := in.Server.Registration().CreateEntry(ctx, store.Entry{SPIFFEID: "spiffe://test.internal/a", Parent: "spiffe://test.internal/node/n2", Selectors: []string{"unix:uid:1"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := in.Server.Registration().CreateEntry(ctx, store.Entry{SPIFFEID: "spiffe://test.internal/b", Parent: node, Selectors: []string{"unix:uid:1"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.MintX509SVIDs(ctx, &nodeapi.MintRequest{Items: []nodeapi.MintItem{{EntryID: mine.ID, CSR: newCSR(t)}, {EntryID: theirs.ID, CSR: newCSR(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Items[0].Error != "" || len(resp.Items[0].Chain) != 2 || resp.Items[1].Error == "" {
		t.Fatalf("mint results: %+v", resp.Items)
	}
	// Evicted: refused, and it cannot attest again.
	if err := in.Server.Registration().EvictNode(ctx, "spiffe://test.internal/node/n2", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MintX509SVIDs(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("evicted node minted: %v", err)
	}
	g2, _ := in.Server.Registration().CreateJoinToken(ctx, "spiffe://test.internal/node/n2", 0, "test")
	if _, err := anon.Attest(ctx, &nodeapi.AttestRequest{JoinToken: g2.Token, CSR: newCSR(t)}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("evicted node attested again: %v", err)
	}
}

func TestBundleEndpointFollowsRotation(t *testing.T) {
	// The server's clock runs a settable offset ahead of the real one, so
	// that the rotation can happen "later" without the test sleeping.
	var ahead atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	in := servertest.Start(t, servertest.Options{Clock: clock})
	td := spiffeid.RequireTrustDomainFromString("test.internal")
	get := func() *spiffebundle.Bundle {
		t.Helper()
		resp, err := in.Anonymous.Get(in.URL + "/bundle")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("/bundle: %d %s", resp.StatusCode, body)
		}
		b, err := spiffebundle.Parse(td, body)
		if err != nil {
			t.Fatalf("/bundle is not a SPIFFE bundle: %v\n%s", err, body)
		}
		return b
	}
	b1 := get()
	seq1, ok := b1.SequenceNumber()
	if !ok {
		t.Fatal("no spiffe_sequence")
	}
	if hint, ok := b1.RefreshHint(); !ok || hint != 5*time.Minute {
		t.Fatalf("spiffe_refresh_hint %v %v", hint, ok)
	}
	if len(b1.X509Authorities()) != 2 || len(b1.JWTAuthorities()) != 1 {
		t.Fatalf("authorities: %d x509, %d jwt", len(b1.X509Authorities()), len(b1.JWTAuthorities()))
	}
	ahead.Store(int64(2 * time.Second)) // the sequence has one-second steps
	if _, err := in.Server.Authority().Hierarchy().RotateIntermediate(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	b2 := get()
	seq2, _ := b2.SequenceNumber()
	if seq2 <= seq1 || len(b2.X509Authorities()) != 3 {
		t.Fatalf("after rotation: sequence %d (was %d), %d x509 authorities", seq2, seq1, len(b2.X509Authorities()))
	}
}

package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
	"github.com/meshpki/meshpki/internal/token"
)

// provisionerTable is the Provisioners the issuance path reads, kept in a
// map (internal/provisioner.Cache imports this package).
type provisionerTable struct {
	mu    sync.Mutex
	provs map[string]CompiledProvisioner
}

func (p *provisionerTable) put(t *testing.T, prov store.Provisioner) {
	t.Helper()
	c, err := policy.Compile(prov.Policy)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.provs[prov.Name] = CompiledProvisioner{Provisioner: prov, Policy: c}
}

func (p *provisionerTable) Provisioner(_ context.Context, name string) (CompiledProvisioner, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.provs[name]
	if !ok {
		return c, store.ErrNotFound
	}
	return c, nil
}

func (p *provisionerTable) OfType(_ context.Context, typ store.ProvisionerType) ([]CompiledProvisioner, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []CompiledProvisioner
	for _, c := range p.provs {
		if c.Provisioner.Type == typ {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b CompiledProvisioner) int { return strings.Compare(a.Provisioner.Name, b.Provisioner.Name) })
	return out, nil
}

// newTestAuthority runs an Authority on a real SQLite store in a temp dir.
func newTestAuthority(t *testing.T) (*Authority, *sqlstore.Store, *provisionerTable) {
	t.Helper()
	ctx := context.Background()
	h, dir, _ := newHierarchy(t, InitOptions{})
	st, err := sqlstore.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := token.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	provs := &provisionerTable{provs: map[string]CompiledProvisioner{}}
	jwtKey, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Hierarchy: h, Store: st, Keyring: kr, Provisioners: provs, Audience: "https://ca.test/v1/sign", JWTKey: jwtKey, JWTKeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a, st, provs
}

func csrDER(t *testing.T) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, leafKey(t, keys.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// lastAudit returns the newest audit record.
func lastAudit(t *testing.T, st *sqlstore.Store) audit.Event {
	t.Helper()
	evs, err := st.ListAudit(context.Background(), 0, 10000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("audit log: %d records, %v", len(evs), err)
	}
	return evs[len(evs)-1]
}

func wantRefused(t *testing.T, st *sqlstore.Store, err error, rule string) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != KindForbidden || ce.Rule != rule {
		t.Fatalf("got %v, want a refusal by rule %q", err, rule)
	}
	if ev := lastAudit(t, st); ev.Type != audit.TypeRequestDenied || ev.Detail["rule"] != rule {
		t.Fatalf("last audit record %s %v, want the refusal by %q", ev.Type, ev.Detail, rule)
	}
}

// Every kind of grant is decided by its own policy at issuance: there is no
// kind that skips it.
func TestEveryGrantKindIsDecidedAtIssuance(t *testing.T) {
	ctx := context.Background()
	a, st, provs := newTestAuthority(t)
	td := a.TrustDomain()
	uri := func(path string) *url.URL { return &url.URL{Scheme: "spiffe", Host: td, Path: path} }

	t.Run("CA identity only under the reserved namespace", func(t *testing.T) {
		pub := leafKey(t, keys.ECP256).Public()
		if _, err := a.IssueInternal(ctx, InternalRequest{Names: policy.Names{URIs: []*url.URL{uri("/meshpki/admin/ops")}}, PublicKey: pub, TTL: adminTestTTL}); err != nil {
			t.Fatalf("admin identity: %v", err)
		}
		_, err := a.IssueInternal(ctx, InternalRequest{Names: policy.Names{URIs: []*url.URL{uri("/payments")}}, PublicKey: pub, TTL: adminTestTTL})
		wantRefused(t, st, err, "CA identity")
	})

	t.Run("node SVID carries its ID and nothing else", func(t *testing.T) {
		is, err := a.SignSVID(ctx, SVIDRequest{SPIFFEID: "spiffe://" + td + "/node/a", CSR: csrDER(t), TTL: DefaultNodeSVIDTTL, Tag: NodeSVIDTag, Actor: "test"})
		if err != nil {
			t.Fatalf("node SVID: %v", err)
		}
		if is.Record.Provisioner != NodeSVIDTag {
			t.Fatalf("recorded provisioner %q", is.Record.Provisioner)
		}
		_, err = a.SignSVID(ctx, SVIDRequest{SPIFFEID: "spiffe://" + td + "/node/b", DNSNames: []string{"b.example.internal"}, CSR: csrDER(t), TTL: DefaultNodeSVIDTTL, Tag: NodeSVIDTag, Actor: "test"})
		wantRefused(t, st, err, "node SVID")
	})

	t.Run("workload SVIDs follow the spiffe provisioners as they are now", func(t *testing.T) {
		req := SVIDRequest{SPIFFEID: "spiffe://" + td + "/payments/api", CSR: csrDER(t), TTL: DefaultX509SVIDTTL, Tag: WorkloadSVIDTag, Actor: "test"}
		if _, err := a.SignSVID(ctx, req); err != nil {
			t.Fatalf("no spiffe provisioner: %v", err)
		}
		provs.put(t, store.Provisioner{Name: "spiffe", Type: store.ProvisionerSPIFFE, Policy: policy.Policy{AllowURI: []string{"spiffe://" + td + "/billing/"}}})
		if _, err := a.SignSVID(ctx, req); err == nil {
			t.Fatal("a tightened spiffe provisioner still let the entry mint")
		}
		if ev := lastAudit(t, st); ev.Type != audit.TypeRequestDenied || ev.Subject != req.SPIFFEID {
			t.Fatalf("last audit record %s about %q, want the refusal about %s", ev.Type, ev.Subject, req.SPIFFEID)
		}
		var ce *Error
		if _, _, err := a.SignJWTSVID(ctx, JWTSVIDRequest{SPIFFEID: req.SPIFFEID, Audience: []string{"x"}, TTL: DefaultJWTSVIDTTL, Actor: "test"}); !errors.As(err, &ce) || ce.Kind != KindForbidden {
			t.Fatalf("JWT-SVID after tightening: %v, want a refusal", err)
		}
	})

	t.Run("an SVID of no known kind is an error", func(t *testing.T) {
		_, err := a.SignSVID(ctx, SVIDRequest{SPIFFEID: "spiffe://" + td + "/x", CSR: csrDER(t), TTL: DefaultX509SVIDTTL, Tag: "spiffe:other"})
		var ce *Error
		if !errors.As(err, &ce) || ce.Kind != KindInternal {
			t.Fatalf("got %v, want an internal error", err)
		}
	})
}

// adminTestTTL is a lifetime above policy's floor for test certificates.
const adminTestTTL = DefaultX509SVIDTTL

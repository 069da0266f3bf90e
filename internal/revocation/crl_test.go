package revocation

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/pgtest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newHierarchy(t testing.TB) *ca.Hierarchy {
	t.Helper()
	h, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Name: "CRL Test", TrustDomain: "crl.test"}, keystest.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recordLeaf records a valid certificate of iss on shard, expiring at
// notAfter, and returns its serial.
func recordLeaf(t testing.TB, st store.Store, iss *ca.Issuer, shard int, notAfter time.Time) store.Serial {
	t.Helper()
	sn, err := ca.NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	serial := store.SerialOf(sn)
	c := store.Certificate{Serial: serial, Subject: "svc", Names: []string{"svc.crl.test"}, Issuer: iss.Name, IssuerGeneration: iss.Generation,
		CRLShard: shard, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter, DER: []byte{0x30, 0}}
	if res, err := st.CommitIssuances(context.Background(), []store.Issuance{{Certificate: &c}}); err != nil || res[0] != nil {
		t.Fatal(err, res)
	}
	return serial
}

func revokeSerial(t testing.TB, st store.Store, serial store.Serial, reason int, at time.Time) {
	t.Helper()
	if _, err := st.RevokeCertificate(context.Background(), store.Revocation{Serial: serial, Reason: reason, At: at}); err != nil {
		t.Fatal(err)
	}
}

// crlAt fetches and parses a published CRL, checking its signature.
func crlAt(t testing.TB, p *CRLPublisher, path string, signer *x509.Certificate) (*x509.RevocationList, *PublishedCRL) {
	t.Helper()
	c, _, err := p.Find(path)
	if err != nil {
		t.Fatalf("Find(%q): %v", path, err)
	}
	crl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := crl.CheckSignatureFrom(signer); err != nil {
		t.Fatalf("%s: signature: %v", path, err)
	}
	return crl, c
}

func serialsOn(crl *x509.RevocationList) []string {
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, e.SerialNumber.Text(16))
	}
	slices.Sort(out)
	return out
}

func sortedSerials(sns ...store.Serial) []string {
	out := make([]string, len(sns))
	for i, s := range sns {
		out[i] = string(s)
	}
	slices.Sort(out)
	return out
}

// idp returns the distribution point URL of a CRL's critical Issuing
// Distribution Point, or "" when it has none.
func idp(t testing.TB, crl *x509.RevocationList) string {
	t.Helper()
	for _, e := range crl.Extensions {
		if !e.Id.Equal(oidIssuingDistPt) {
			continue
		}
		if !e.Critical {
			t.Fatal("the Issuing Distribution Point is not critical")
		}
		var v struct {
			DP struct {
				FullName asn1.RawValue `asn1:"tag:0"`
			} `asn1:"optional,tag:0"`
			OnlyUser bool `asn1:"optional,tag:1"`
		}
		if _, err := asn1.Unmarshal(e.Value, &v); err != nil {
			t.Fatalf("IDP: %v", err)
		}
		var uri asn1.RawValue
		if _, err := asn1.Unmarshal(v.DP.FullName.Bytes, &uri); err != nil || uri.Tag != 6 || !v.OnlyUser {
			t.Fatalf("IDP: %v %+v %v", err, uri, v.OnlyUser)
		}
		return string(uri.Bytes)
	}
	return ""
}

func stopAll(t testing.TB, p *CRLPublisher) {
	t.Helper()
	if err := p.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The publisher builds each generation's full CRL and its shards, grows
// the shards as entries pile up, numbers CRLs ever higher even when the
// clock steps back, and drops expired entries at the next build.
func TestCRLPublisher(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h := newHierarchy(t)
			iss := h.Issuers()[0]
			clock := &testClock{t: time.Now()}
			p := &CRLPublisher{Hierarchy: h, Store: st, BaseURL: "http://ca.crl.test:8080", ShardEntries: 2, Clock: clock.now}
			stopAll(t, p)
			crl, first := crlAt(t, p, "", iss.Cert)
			if len(crl.RevokedCertificateEntries) != 0 || first.Shards != 1 || idp(t, crl) != "" {
				t.Fatalf("empty CRL: %d entries, %d shards", len(crl.RevokedCertificateEntries), first.Shards)
			}
			if _, c := crlAt(t, p, "default/1/0", iss.Cert); c.Number != first.Number {
				t.Fatal("the shard and the full CRL of one build have different numbers")
			}
			rootCRL, _ := crlAt(t, p, "root", h.Root())
			if len(rootCRL.RevokedCertificateEntries) != 0 {
				t.Fatal("the root's CRL lists something")
			}

			// Three revoked on shard 0 (the only one): more than 2 per
			// shard, so new leaves are spread over two.
			var revoked []store.Serial
			for range 3 {
				sn := recordLeaf(t, st, iss, 0, clock.now().Add(time.Hour))
				revokeSerial(t, st, sn, 1, clock.now())
				revoked = append(revoked, sn)
			}
			recordLeaf(t, st, iss, 0, clock.now().Add(time.Hour)) // valid: on no CRL
			stopAll(t, p)
			crl, second := crlAt(t, p, "default/1", iss.Cert)
			if !slices.Equal(serialsOn(crl), sortedSerials(revoked...)) || second.Shards != 2 || second.Number <= first.Number {
				t.Fatalf("full CRL: %v (want %v), %d shards, number %d after %d", serialsOn(crl), sortedSerials(revoked...), second.Shards, second.Number, first.Number)
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.ReasonCode != 1 {
					t.Errorf("reason %d, want 1", e.ReasonCode)
				}
			}
			shard0, _ := crlAt(t, p, "default/1/0", iss.Cert)
			if got := idp(t, shard0); got != "http://ca.crl.test:8080/crl/default/1/0" || len(shard0.RevokedCertificateEntries) != 3 {
				t.Fatalf("shard 0: IDP %q, %d entries", got, len(shard0.RevokedCertificateEntries))
			}
			shard1, _ := crlAt(t, p, "default/1/1.pem", iss.Cert)
			if got := idp(t, shard1); got != "http://ca.crl.test:8080/crl/default/1/1" || len(shard1.RevokedCertificateEntries) != 0 {
				t.Fatalf("shard 1: IDP %q, %d entries", got, len(shard1.RevokedCertificateEntries))
			}

			// New leaves: both shards, each pointer naming its shard;
			// a day or less carries no pointers.
			seen := map[int]bool{}
			for range 64 {
				ptrs, shard := p.LeafPointers(iss, 90*24*time.Hour)
				seen[shard] = true
				if ptrs.CRL != fmt.Sprintf("http://ca.crl.test:8080/crl/default/1/%d", shard) || ptrs.OCSP != "http://ca.crl.test:8080/ocsp" ||
					ptrs.CAIssuers != "http://ca.crl.test:8080/intermediates/default/1.der" {
					t.Fatalf("pointers %+v for shard %d", ptrs, shard)
				}
			}
			if !seen[0] || !seen[1] || len(seen) != 2 {
				t.Fatalf("shards used: %v", seen)
			}
			if ptrs, _ := p.LeafPointers(iss, 24*time.Hour); ptrs != (ca.Pointers{}) {
				t.Fatalf("a 24h leaf gets pointers %+v", ptrs)
			}

			// One on shard 1, revoked while the clock stepped back.
			clock.add(-time.Hour)
			late := recordLeaf(t, st, iss, 1, clock.now().Add(2*time.Hour))
			revokeSerial(t, st, late, 4, clock.now())
			stopAll(t, p)
			shard1, third := crlAt(t, p, "default/1/1", iss.Cert)
			if !slices.Equal(serialsOn(shard1), []string{string(late)}) || third.Number <= second.Number {
				t.Fatalf("shard 1 after a revocation: %v, number %d after %d", serialsOn(shard1), third.Number, second.Number)
			}
			if crl, _ := crlAt(t, p, "default", iss.Cert); len(crl.RevokedCertificateEntries) != 4 {
				t.Fatalf("full CRL: %d entries, want 4", len(crl.RevokedCertificateEntries))
			}

			// Nothing changed: no new build.
			stopAll(t, p)
			if _, c := crlAt(t, p, "", iss.Cert); c.Number != third.Number {
				t.Fatal("rebuilt with nothing changed")
			}
			// Nine hours on (over a third of 24h): rebuilt, and the three
			// that expired an hour after they were revoked are gone.
			clock.add(9 * time.Hour)
			stopAll(t, p)
			crl, fourth := crlAt(t, p, "", iss.Cert)
			if fourth.Number <= third.Number || len(crl.RevokedCertificateEntries) != 0 {
				t.Fatalf("after 9h: number %d (was %d), entries %v", fourth.Number, third.Number, serialsOn(crl))
			}
		})
	}
}

// Replicas: one builds (the leader), every one serves the same bytes; when
// another is elected, it builds.
func TestCRLReplicasShareOneCRL(t *testing.T) {
	var a, b store.Store
	if os.Getenv("MESHPKI_TEST_POSTGRES_URL") != "" {
		url := pgtest.URL(t)
		for _, s := range []*store.Store{&a, &b} {
			st, err := sqlstore.Open(context.Background(), url, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			*s = st
		}
	} else {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI sets MESHPKI_TEST_POSTGRES_URL")
		}
		st := stores(t)["sqlite"]
		a, b = st, st
	}
	h := newHierarchy(t)
	iss := h.Issuers()[0]
	clock := &testClock{t: time.Now()}
	var bLeads atomic.Bool // a leads until it "stops"
	pa := &CRLPublisher{Hierarchy: h, Store: a.(CRLStore), Clock: clock.now, Leading: func() bool { return !bLeads.Load() }}
	pb := &CRLPublisher{Hierarchy: h, Store: b.(CRLStore), Clock: clock.now, Leading: bLeads.Load}
	stopAll(t, pa)
	stopAll(t, pb)
	_, ca1 := crlAt(t, pa, "", iss.Cert)
	_, cb1 := crlAt(t, pb, "", iss.Cert)
	if ca1.Number != cb1.Number || string(ca1.DER) != string(cb1.DER) {
		t.Fatal("the replicas serve different CRLs")
	}
	// A revocation made through b: a, the leader, builds; b serves it.
	sn := recordLeaf(t, b, iss, 0, clock.now().Add(time.Hour))
	revokeSerial(t, b, sn, 1, clock.now())
	stopAll(t, pb)
	if _, c := crlAt(t, pb, "", iss.Cert); c.Number != cb1.Number {
		t.Fatal("b built although a leads")
	}
	stopAll(t, pa)
	stopAll(t, pb)
	crl, cb2 := crlAt(t, pb, "", iss.Cert)
	if !slices.Equal(serialsOn(crl), []string{string(sn)}) || cb2.Number <= cb1.Number {
		t.Fatalf("b serves %v, number %d", serialsOn(crl), cb2.Number)
	}
	// a stops; b, elected, builds.
	bLeads.Store(true)
	sn2 := recordLeaf(t, b, iss, 0, clock.now().Add(time.Hour))
	revokeSerial(t, b, sn2, 1, clock.now())
	stopAll(t, pb)
	crl, cb3 := crlAt(t, pb, "", iss.Cert)
	if len(crl.RevokedCertificateEntries) != 2 || cb3.Number <= cb2.Number {
		t.Fatalf("after a stopped: %v, number %d", serialsOn(crl), cb3.Number)
	}
}

// Revoking an intermediate generation puts it on the root's CRL with its
// reason, and it signs nothing more.
func TestRootCRLListsRevokedIntermediates(t *testing.T) {
	st := stores(t)["sqlite"]
	h := newHierarchy(t)
	iss := h.Issuers()[0]
	p := &CRLPublisher{Hierarchy: h, Store: st}
	stopAll(t, p)
	if _, err := h.RevokeIssuer(context.Background(), "default", 1, time.Now(), int(KeyCompromise)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Issuer("default"); err == nil {
		t.Fatal("a revoked generation still signs")
	}
	stopAll(t, p)
	crl, _ := crlAt(t, p, "root", h.Root())
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(iss.Cert.SerialNumber) != 0 ||
		crl.RevokedCertificateEntries[0].ReasonCode != int(KeyCompromise) {
		t.Fatalf("root CRL: %+v", crl.RevokedCertificateEntries)
	}
	if _, _, err := p.Find("default"); err == nil || !strings.Contains(err.Error(), "no intermediate") {
		t.Fatalf("Find(default) with no generation that may sign: %v", err)
	}
	if _, err := h.RevokeIssuer(context.Background(), "default", 7, time.Now(), 1); err == nil {
		t.Fatal("revoked a generation that does not exist")
	}
}

// A revocation made here rebuilds its shard first, on its own: the shard
// lists it before the generation's full CRL is built again.
func TestRevokedShardIsBuiltFirst(t *testing.T) {
	st := stores(t)["sqlite"]
	h := newHierarchy(t)
	iss := h.Issuers()[0]
	p := &CRLPublisher{Hierarchy: h, Store: st}
	stopAll(t, p)
	sn := recordLeaf(t, st, iss, 0, time.Now().Add(time.Hour))
	revokeSerial(t, st, sn, 1, time.Now())
	p.Revoked(sn)
	ctx := context.Background()
	if ok, err := p.buildPendingShards(ctx, time.Now()); !ok || err != nil {
		t.Fatalf("buildPendingShards: %v %v", ok, err)
	}
	if err := p.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	shard, _ := crlAt(t, p, "default/1/0", iss.Cert)
	full, _ := crlAt(t, p, "default/1", iss.Cert)
	if !slices.Equal(serialsOn(shard), []string{string(sn)}) || len(full.RevokedCertificateEntries) != 0 {
		t.Fatalf("shard %v, full %v", serialsOn(shard), serialsOn(full))
	}
	stopAll(t, p)
	if full, _ := crlAt(t, p, "default/1", iss.Cert); !slices.Equal(serialsOn(full), []string{string(sn)}) {
		t.Fatalf("full CRL after the cycle: %v", serialsOn(full))
	}
}

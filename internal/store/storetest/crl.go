package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

var crlTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"RevocationRevisionMovesWithEveryRevokingTransaction", testRevocationRevision},
	{"RevokedCertificatesOfOneGeneration", testRevokedCertificates},
	{"RevokeMatchingByIssuerGeneration", testRevokeMatchingGeneration},
	{"PutCRLKeepsTheHighestNumber", testPutCRL},
	{"AssignIssuerGenerationsOnlyToUnknown", testAssignGenerations},
	{"IssuerRevocationsRecordedOnceWithTheirAudit", testIssuerRevocations},
}

func revision(t testing.TB, s store.Store) int64 {
	t.Helper()
	r, err := s.RevocationRevision(context.Background())
	if err != nil {
		t.Fatalf("RevocationRevision: %v", err)
	}
	return r
}

func revokedEvent(sn store.Serial) audit.Event { return newEvent(audit.TypeCertificateRevoked, sn) }

func testRevocationRevision(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := newCert("a.example", "a.example"), newCert("b.example", "b.example")
	commit(t, s, issuance("", a), issuance("", b))
	r0 := revision(t, s)
	if err := revokeOne(ctx, s, a.Serial, 1, epoch, revokedEvent(a.Serial)); err != nil {
		t.Fatal(err)
	}
	if r := revision(t, s); r != r0+1 {
		t.Fatalf("after RevokeCertificate: revision %d, want %d", r, r0+1)
	}
	if err := revokeOne(ctx, s, a.Serial, 1, epoch, revokedEvent(a.Serial)); err == nil {
		t.Fatal("second revocation accepted")
	}
	if _, err := s.RevokeMatching(ctx, store.MatchRevocation{Name: "nothing.example", Reason: 1, At: epoch, Event: revokedEvent}); err != nil {
		t.Fatal(err)
	}
	if r := revision(t, s); r != r0+1 {
		t.Fatalf("after revocations that revoked nothing: revision %d, want %d", r, r0+1)
	}
	if _, err := s.RevokeMatching(ctx, store.MatchRevocation{Name: "b.example", Reason: 1, At: epoch, Event: revokedEvent}); err != nil {
		t.Fatal(err)
	}
	if r := revision(t, s); r != r0+2 {
		t.Fatalf("after RevokeMatching: revision %d, want %d", r, r0+2)
	}
}

func testRevokedCertificates(t *testing.T, s store.Store) {
	ctx := context.Background()
	gen1, gen1b, gen2 := newCert("a"), newCert("b"), newCert("c")
	gen1b.CRLShard = 5
	gen2.IssuerGeneration = 2
	other := newCert("d")
	other.Issuer = "edge"
	expired := newCert("e")
	expired.NotAfter = epoch.Add(-time.Minute)
	valid := newCert("f")
	commit(t, s, issuance("", gen1), issuance("", gen1b), issuance("", gen2), issuance("", other), issuance("", expired), issuance("", valid))
	at := epoch.Add(-30 * time.Minute)
	for i, c := range []*store.Certificate{gen1, gen1b, gen2, other, expired} {
		if err := revokeOne(ctx, s, c.Serial, i, at, revokedEvent(c.Serial)); err != nil {
			t.Fatal(err)
		}
	}
	var got []store.RevokedEntry
	err := s.RevokedCertificates(ctx, "default", 1, store.AllShards, epoch, func(e store.RevokedEntry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b store.RevokedEntry) int { return a.Shard - b.Shard })
	want := []store.RevokedEntry{{Serial: gen1.Serial, RevokedAt: µs(at), Reason: 0, Shard: 0}, {Serial: gen1b.Serial, RevokedAt: µs(at), Reason: 1, Shard: 5}}
	if len(got) != 2 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Serial != want[i].Serial || !got[i].RevokedAt.Equal(want[i].RevokedAt) || got[i].Reason != want[i].Reason || got[i].Shard != want[i].Shard {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	var shard5 []store.Serial
	if err := s.RevokedCertificates(ctx, "default", 1, 5, epoch, func(e store.RevokedEntry) error {
		shard5 = append(shard5, e.Serial)
		return nil
	}); err != nil || !slices.Equal(shard5, []store.Serial{gen1b.Serial}) {
		t.Errorf("shard 5: %v %v", shard5, err)
	}
	stop := context.Canceled
	if err := s.RevokedCertificates(ctx, "default", 1, store.AllShards, epoch, func(store.RevokedEntry) error { return stop }); err != stop {
		t.Errorf("fn's error: got %v", err)
	}
}

func testRevokeMatchingGeneration(t *testing.T, s store.Store) {
	ctx := context.Background()
	gen1, gen2, other := newCert("a"), newCert("b"), newCert("c")
	gen2.IssuerGeneration = 2
	other.Issuer = "edge"
	commit(t, s, issuance("", gen1), issuance("", gen2), issuance("", other))
	got, err := s.RevokeMatching(ctx, store.MatchRevocation{Issuer: "default", Generation: 2, Reason: 4, At: epoch, Event: revokedEvent})
	if err != nil || !slices.Equal(got, []store.Serial{gen2.Serial}) {
		t.Fatalf("generation 2: %v %v", got, err)
	}
	got, err = s.RevokeMatching(ctx, store.MatchRevocation{Issuer: "default", Reason: 4, At: epoch, Event: revokedEvent})
	if err != nil || !slices.Equal(got, []store.Serial{gen1.Serial}) {
		t.Fatalf("every generation: %v %v", got, err)
	}
	if c := mustGet(t, s, other.Serial); c.Status != store.StatusValid {
		t.Fatal("another issuer's certificate was revoked")
	}
}

func testPutCRL(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetCRL(ctx, "default/1"); err != store.ErrNotFound {
		t.Fatalf("GetCRL of nothing: %v", err)
	}
	rec := store.CRLRecord{Scope: "default/1", Number: 5, ThisUpdate: epoch, NextUpdate: epoch.Add(24 * time.Hour), Revision: 3, Shards: 2, DER: []byte{0x30, 0}}
	if ok, err := s.PutCRL(ctx, rec); !ok || err != nil {
		t.Fatalf("first put: %v %v", ok, err)
	}
	older := rec
	older.Number, older.DER = 5, []byte{0x30, 1, 1}
	if ok, err := s.PutCRL(ctx, older); ok || err != nil {
		t.Fatalf("put of the same number: %v %v, want refused", ok, err)
	}
	older.Number = 4
	if ok, err := s.PutCRL(ctx, older); ok || err != nil {
		t.Fatalf("put of a lower number: %v %v, want refused", ok, err)
	}
	got, err := s.GetCRL(ctx, "default/1")
	if err != nil || got.Number != 5 || string(got.DER) != string(rec.DER) || got.Shards != 2 || got.Revision != 3 ||
		!got.ThisUpdate.Equal(µs(epoch)) || !got.NextUpdate.Equal(µs(epoch.Add(24*time.Hour))) {
		t.Fatalf("GetCRL: %+v %v", got, err)
	}
	newer := rec
	newer.Number, newer.DER = 9, []byte{0x30, 1, 2}
	if ok, err := s.PutCRL(ctx, newer); !ok || err != nil {
		t.Fatalf("put of a higher number: %v %v", ok, err)
	}
	if _, err := s.PutCRL(ctx, store.CRLRecord{Scope: "x", Number: 1}); err == nil {
		t.Fatal("a CRL without DER was accepted")
	}
	rec.Scope = "default/1/0"
	if _, err := s.PutCRL(ctx, rec); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListCRLs(ctx)
	if err != nil || len(list) != 2 || list[0].Scope != "default/1" || list[0].Number != 9 || list[1].Scope != "default/1/0" || list[0].DER != nil {
		t.Fatalf("ListCRLs: %+v %v", list, err)
	}
}

func testAssignGenerations(t *testing.T, s store.Store) {
	ctx := context.Background()
	known := newCert("known")
	var unknown []*store.Certificate
	items := []store.Issuance{issuance("", known)}
	for i := range 5 {
		c := newCert("unknown")
		c.IssuerGeneration = 0
		if i == 4 {
			c.Issuer = "gone"
		}
		unknown = append(unknown, c)
		items = append(items, issuance("", c))
	}
	commit(t, s, items...)
	asked := map[string]bool{}
	gen := func(issuer string, der []byte) int {
		asked[string(der)] = true
		if issuer == "gone" {
			return 0
		}
		return 3
	}
	n, err := s.AssignIssuerGenerations(ctx, gen)
	if err != nil || n != 5 {
		t.Fatalf("AssignIssuerGenerations: %d %v, want 5", n, err)
	}
	if asked[string(known.DER)] {
		t.Error("asked about a certificate whose generation is known")
	}
	for i, c := range unknown {
		want := 3
		if i == 4 {
			want = -1
		}
		if got := mustGet(t, s, c.Serial).IssuerGeneration; got != want {
			t.Errorf("certificate %d: generation %d, want %d", i, got, want)
		}
	}
	if n, err := s.AssignIssuerGenerations(ctx, gen); err != nil || n != 0 {
		t.Fatalf("second AssignIssuerGenerations: %d %v, want 0", n, err)
	}
}

func testIssuerRevocations(t *testing.T, s store.Store) {
	ctx := context.Background()
	if rs, err := s.IssuerRevocations(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("IssuerRevocations of nothing: %v %v", rs, err)
	}
	headBefore, _, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := store.IssuerRevocation{Serial: "0b", Name: "default", Generation: 1, RevokedAt: epoch, Reason: 2}
	for range 2 {
		if err := s.RecordIssuerRevocation(ctx, r, revokedEvent(r.Serial)); err != nil {
			t.Fatal(err)
		}
	}
	later := store.IssuerRevocation{Serial: "0a", Name: "payments", Generation: 3, RevokedAt: epoch.Add(time.Hour), Reason: 0}
	if err := s.RecordIssuerRevocation(ctx, later, revokedEvent(later.Serial)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssuerRevocation(ctx, store.IssuerRevocation{Serial: "0c", Name: "x", Generation: 1, Reason: 11}, audit.Event{}); err == nil {
		t.Fatal("reason 11 was accepted")
	}
	rs, err := s.IssuerRevocations(ctx)
	if err != nil || len(rs) != 2 || rs[0] != (store.IssuerRevocation{Serial: "0a", Name: "payments", Generation: 3, RevokedAt: µs(epoch.Add(time.Hour)), Reason: 0}) ||
		rs[1].Serial != "0b" || rs[1].Name != "default" || rs[1].Generation != 1 || !rs[1].RevokedAt.Equal(µs(epoch)) || rs[1].Reason != 2 {
		t.Fatalf("IssuerRevocations: %+v %v", rs, err)
	}
	// The second record of 0b appended no audit record.
	if head, _, err := s.AuditHead(ctx); err != nil || head != headBefore+2 {
		t.Fatalf("audit head %d after two revocations recorded (before %d): %v", head, headBefore, err)
	}
}

// Package storetest owns the conformance suite of store.Store: every
// implementation must pass Run, which checks each method against the
// sentences of its contract in package store. Use it from a backend's tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mybackend.Open(…)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Subtests run in parallel, each on its own empty store.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store for the
// test it is given and close it when that test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"CommitThenGetRoundTripsEveryField", testRoundTrip},
		{"GetUnknownSerialIsNotFound", testGetNotFound},
		{"CommitOfNoItems", testCommitNoItems},
		{"TokenReplayedAcrossCommits", testReplayAcrossCommits},
		{"TokenReplayedWithinBatch", testReplayWithinBatch},
		{"DuplicateSerialLeavesTokenUnconsumed", testDuplicateSerial},
		{"DuplicateSerialWithinBatch", testDuplicateSerialWithinBatch},
		{"RefusedItemLeavesTokenForLaterItem", testRefusedItemFreesToken},
		{"MixedBatchWritesOnlyAcceptedItems", testMixedBatch},
		{"CanceledContextWritesNothing", testCanceled},
		{"ConsumeTokenOnce", testConsumeToken},
		{"PruneTokensForgetsOnlyExpired", testPruneTokens},
		{"RevokeMarksRevokedAndAppendsEvent", testRevoke},
		{"RevokeUnknownIsNotFound", testRevokeNotFound},
		{"RevokeTwiceIsAlreadyRevoked", testRevokeTwice},
		{"RevokeWithRenewalsRevokesTheWholeLineage", testRevokeRenewals},
		{"ListByName", testListByName},
		{"ListByStatusAndExpiry", testListByStatus},
		{"ListStatusWithoutNowUsesClock", testListStatusClock},
		{"ListPagesWithoutGapsOrDuplicates", testListPages},
		{"ListPageSizeDefaultAndCap", testListPageSize},
		{"ProvisionerLifecycle", testProvisionerLifecycle},
		{"OperatorLifecycle", testOperatorLifecycle},
		{"ProvisionerErrorsChangeNothing", testProvisionerErrors},
		{"ListProvisionersOrderedByName", testListProvisioners},
		{"AuditEmptyLog", testAuditEmpty},
		{"AuditAppendChains", testAuditAppend},
		{"AuditListPages", testAuditPages},
		{"CertificateAuditTrailNewestFirst", testCertificateAudit},
		{"AuditEventsOfEveryWriteChainInOrder", testAuditFromWrites},
		{"ConcurrentCommitsLoseNothing", testConcurrentCommits},
		{"ConcurrentAuditedWritesChain", testConcurrentAuditedWrites},
		{"Ping", testPing},
	}
	tests = append(tests, acmeTests...)
	tests = append(tests, spiffeTests...)
	tests = append(tests, inventoryTests...)
	tests = append(tests, alertTests...)
	tests = append(tests, crlTests...)
	tests = append(tests, uiTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// epoch is the fixtures' reference time: not UTC and with nanoseconds, so
// the suite sees the store normalise both.
var epoch = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+5", 5*3600))

// µs normalises t the way the store must return it.
func µs(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// newSerial returns a random serial in the store's form: lowercase hex, no
// leading zeros.
func newSerial() store.Serial {
	b := make([]byte, 16)
	rand.Read(b) // never fails
	return store.SerialOf(new(big.Int).SetBytes(b))
}

// newCert returns a valid certificate for subject, valid an hour either side
// of epoch.
func newCert(subject string, names ...string) *store.Certificate {
	der := make([]byte, 64)
	rand.Read(der) // never fails
	return &store.Certificate{
		Serial:      newSerial(),
		Provisioner: "good-provisioner",
		Issuer:      "default",
		// IssuerGeneration 1 keeps fixtures out of AssignIssuerGenerations.
		IssuerGeneration: 1,
		Subject:          subject,
		Names:            names,
		NotBefore:        epoch.Add(-time.Hour),
		NotAfter:         epoch.Add(time.Hour),
		DER:              der,
		Status:           store.StatusValid,
		CreatedAt:        epoch.Add(-time.Minute),
	}
}

// newEvent returns an event about subject.
func newEvent[S ~string](typ string, subject S) audit.Event {
	return audit.Event{
		Time:    epoch,
		Type:    typ,
		Actor:   "system",
		Subject: string(subject),
		Outcome: "success",
		Detail:  map[string]string{"subject": string(subject)},
	}
}

// issuance is the item that issues c against token id tokenID with one event.
func issuance(tokenID string, c *store.Certificate) store.Issuance {
	return store.Issuance{
		TokenID:      tokenID,
		TokenExpires: epoch.Add(5 * time.Minute),
		Certificate:  c,
		Audit:        []audit.Event{newEvent(audit.TypeCertificateIssued, c.Serial)},
	}
}

func commit(t testing.TB, s store.Store, items ...store.Issuance) []error {
	t.Helper()
	results, err := s.CommitIssuances(context.Background(), items)
	if err != nil {
		t.Fatalf("CommitIssuances: %v", err)
	}
	if len(results) != len(items) {
		t.Fatalf("CommitIssuances returned %d results for %d items", len(results), len(items))
	}
	return results
}

// wantResults checks per-item results against the sentinel errors expected.
func wantResults(t testing.TB, got []error, want ...error) {
	t.Helper()
	for i := range want {
		switch {
		case want[i] == nil && got[i] != nil:
			t.Errorf("item %d: got %v, want it written", i, got[i])
		case want[i] != nil && !errors.Is(got[i], want[i]):
			t.Errorf("item %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func mustGet(t testing.TB, s store.Store, serial store.Serial) store.Certificate {
	t.Helper()
	c, err := s.GetCertificate(context.Background(), serial)
	if err != nil {
		t.Fatalf("GetCertificate(%s): %v", serial, err)
	}
	return c
}

func wantAbsent(t testing.TB, s store.Store, serial store.Serial) {
	t.Helper()
	if _, err := s.GetCertificate(context.Background(), serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCertificate(%s): got %v, want ErrNotFound", serial, err)
	}
}

// checkTime checks that got is want at microsecond precision, in UTC.
func checkTime(t testing.TB, field string, got, want time.Time) {
	t.Helper()
	want = µs(want)
	if !got.Equal(want) || (!got.IsZero() && got.Location() != time.UTC) {
		t.Errorf("%s = %v, want %v", field, got, want)
	}
}

// checkCert checks that got is the record of want after a round trip.
func checkCert(t testing.TB, got, want store.Certificate) {
	t.Helper()
	if want.Status == "" {
		want.Status = store.StatusValid
	}
	checkTime(t, "NotBefore", got.NotBefore, want.NotBefore)
	checkTime(t, "NotAfter", got.NotAfter, want.NotAfter)
	checkTime(t, "RevokedAt", got.RevokedAt, want.RevokedAt)
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	got.NotBefore, got.NotAfter, got.RevokedAt, got.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	want.NotBefore, want.NotAfter, want.RevokedAt, want.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("certificate round trip:\n got %+v\nwant %+v", got, want)
	}
}

func head(t testing.TB, s store.Store) int64 {
	t.Helper()
	seq, _, err := s.AuditHead(context.Background())
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	return seq
}

// allAudit reads the whole log, checking it verifies.
func allAudit(t testing.TB, s store.Store) []audit.Event {
	t.Helper()
	ctx := context.Background()
	rep, err := audit.Verify(ctx, s, nil)
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("audit.Verify: %v", rep.Problems)
	}
	var all []audit.Event
	for {
		page, err := s.ListAudit(ctx, int64(len(all)), 100)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		all = append(all, page...)
		if len(page) < 100 {
			break
		}
	}
	if int64(len(all)) != rep.Records {
		t.Fatalf("read %d records, Verify read %d", len(all), rep.Records)
	}
	return all
}

// auditSubjects lists the Type:Subject of every record in order.
func auditSubjects(events []audit.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type + ":" + e.Subject
	}
	return out
}

func testRoundTrip(t *testing.T, s store.Store) {
	valid := newCert("svc.example.com", "svc.example.com", "b.example.com", "10.0.0.1", "spiffe://example.com/svc", "ops@example.com")
	valid.RenewedFrom = newSerial()
	valid.IssuerGeneration, valid.CRLShard = 7, 3
	revoked := newCert("old.example.com")
	revoked.Provisioner = ""
	revoked.Status = store.StatusRevoked
	revoked.RevokedAt = epoch.Add(-time.Second)
	revoked.RevocationReason = 4
	unstamped := newCert("new.example.com", "new.example.com")
	unstamped.CreatedAt = time.Time{}
	unstamped.Status = ""

	before := time.Now()
	wantResults(t, commit(t, s, issuance("tok-1", valid), issuance("", revoked), issuance("tok-3", unstamped)), nil, nil, nil)
	after := time.Now()

	checkCert(t, mustGet(t, s, valid.Serial), *valid)
	checkCert(t, mustGet(t, s, revoked.Serial), *revoked)

	got := mustGet(t, s, unstamped.Serial)
	if got.CreatedAt.Before(before.Truncate(time.Microsecond)) || got.CreatedAt.After(after) {
		t.Errorf("zero CreatedAt recorded as %v, want the time of the commit", got.CreatedAt)
	}
	want := *unstamped
	want.CreatedAt = got.CreatedAt
	checkCert(t, got, want)
}

func testGetNotFound(t *testing.T, s store.Store) {
	wantAbsent(t, s, "abc123")
}

func testCommitNoItems(t *testing.T, s store.Store) {
	results, err := s.CommitIssuances(context.Background(), nil)
	if err != nil || len(results) != 0 {
		t.Fatalf("CommitIssuances(nil) = %v, %v; want no results and no error", results, err)
	}
	if got := head(t, s); got != 0 {
		t.Errorf("audit head %d after an empty commit, want 0", got)
	}
}

func testReplayAcrossCommits(t *testing.T, s store.Store) {
	first, second := newCert("a.example.com"), newCert("b.example.com")
	wantResults(t, commit(t, s, issuance("tok-replayed", first)), nil)
	wantResults(t, commit(t, s, issuance("tok-replayed", second)), store.ErrTokenReplayed)
	mustGet(t, s, first.Serial)
	wantAbsent(t, s, second.Serial)
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, []string{audit.TypeCertificateIssued + ":" + string(first.Serial)}) {
		t.Errorf("audit log %v, want only the first issuance", got)
	}
}

func testReplayWithinBatch(t *testing.T, s store.Store) {
	first, second := newCert("a.example.com"), newCert("b.example.com")
	wantResults(t, commit(t, s, issuance("tok-twice", first), issuance("tok-twice", second)), nil, store.ErrTokenReplayed)
	mustGet(t, s, first.Serial)
	wantAbsent(t, s, second.Serial)
	if got := head(t, s); got != 1 {
		t.Errorf("audit head %d, want 1 (the replayed item's event is not written)", got)
	}
}

func testDuplicateSerial(t *testing.T, s store.Store) {
	ctx := context.Background()
	original := newCert("a.example.com")
	wantResults(t, commit(t, s, issuance("tok-a", original)), nil)

	clash := newCert("b.example.com")
	clash.Serial = original.Serial
	wantResults(t, commit(t, s, issuance("tok-b", clash)), store.ErrConflict)

	checkCert(t, mustGet(t, s, original.Serial), *original)
	if got := head(t, s); got != 1 {
		t.Errorf("audit head %d, want 1 (the conflicting item's event is not written)", got)
	}
	if err := s.ConsumeToken(ctx, "tok-b", epoch); err != nil {
		t.Errorf("token of the conflicting item was consumed: ConsumeToken = %v", err)
	}
}

func testDuplicateSerialWithinBatch(t *testing.T, s store.Store) {
	first := newCert("a.example.com")
	second := newCert("b.example.com")
	second.Serial = first.Serial
	wantResults(t, commit(t, s, issuance("tok-1", first), issuance("tok-2", second)), nil, store.ErrConflict)
	checkCert(t, mustGet(t, s, first.Serial), *first)
	if err := s.ConsumeToken(context.Background(), "tok-2", epoch); err != nil {
		t.Errorf("token of the conflicting item was consumed: ConsumeToken = %v", err)
	}
}

// An item refused for its serial did not consume its token, so a later item
// of the same batch with that token is written.
func testRefusedItemFreesToken(t *testing.T, s store.Store) {
	existing := newCert("a.example.com")
	wantResults(t, commit(t, s, issuance("", existing)), nil)

	clash := newCert("b.example.com")
	clash.Serial = existing.Serial
	retry := newCert("b.example.com")
	wantResults(t, commit(t, s, issuance("tok-retry", clash), issuance("tok-retry", retry)), store.ErrConflict, nil)
	mustGet(t, s, retry.Serial)
	wantResults(t, commit(t, s, issuance("tok-retry", newCert("c.example.com"))), store.ErrTokenReplayed)
}

func testMixedBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.ConsumeToken(ctx, "tok-used", epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	existing := newCert("existing.example.com")
	wantResults(t, commit(t, s, issuance("", existing)), nil)

	ok1 := newCert("ok1.example.com")
	replayed := newCert("replayed.example.com")
	clash := newCert("clash.example.com")
	clash.Serial = existing.Serial
	ok2 := newCert("ok2.example.com")
	tokenOnly := store.Issuance{TokenID: "tok-only", TokenExpires: epoch, Audit: []audit.Event{newEvent(audit.TypeTokenCreated, "tok-only")}}
	auditOnly := store.Issuance{Audit: []audit.Event{newEvent(audit.TypeRequestDenied, "denied"), newEvent(audit.TypeRequestDenied, "denied-again")}}

	results := commit(t, s,
		issuance("tok-ok1", ok1),
		issuance("tok-used", replayed),
		issuance("tok-clash", clash),
		issuance("tok-ok2", ok2),
		tokenOnly,
		auditOnly,
	)
	wantResults(t, results, nil, store.ErrTokenReplayed, store.ErrConflict, nil, nil, nil)

	mustGet(t, s, ok1.Serial)
	mustGet(t, s, ok2.Serial)
	wantAbsent(t, s, replayed.Serial)
	checkCert(t, mustGet(t, s, existing.Serial), *existing)
	if err := s.ConsumeToken(ctx, "tok-only", epoch); !errors.Is(err, store.ErrTokenReplayed) {
		t.Errorf("token-only item: ConsumeToken = %v, want ErrTokenReplayed", err)
	}
	if err := s.ConsumeToken(ctx, "tok-clash", epoch); err != nil {
		t.Errorf("token of the conflicting item: ConsumeToken = %v, want it unconsumed", err)
	}
	issued := audit.TypeCertificateIssued + ":"
	want := []string{
		issued + string(existing.Serial),
		issued + string(ok1.Serial),
		issued + string(ok2.Serial),
		audit.TypeTokenCreated + ":tok-only",
		audit.TypeRequestDenied + ":denied",
		audit.TypeRequestDenied + ":denied-again",
	}
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, want) {
		t.Errorf("audit log\n got %v\nwant %v", got, want)
	}
}

func testCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := newCert("a.example.com")
	if _, err := s.CommitIssuances(ctx, []store.Issuance{issuance("tok-1", c)}); err == nil {
		t.Fatal("CommitIssuances with a canceled context succeeded")
	}
	wantAbsent(t, s, c.Serial)
	if got := head(t, s); got != 0 {
		t.Errorf("audit head %d, want 0", got)
	}
	if err := s.ConsumeToken(context.Background(), "tok-1", epoch); err != nil {
		t.Errorf("token consumed by a canceled commit: %v", err)
	}
}

func testConsumeToken(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.ConsumeToken(ctx, "tok-1", epoch); err != nil {
		t.Fatalf("first ConsumeToken: %v", err)
	}
	if err := s.ConsumeToken(ctx, "tok-1", epoch); !errors.Is(err, store.ErrTokenReplayed) {
		t.Errorf("second ConsumeToken = %v, want ErrTokenReplayed", err)
	}
	wantResults(t, commit(t, s, issuance("tok-1", newCert("a.example.com"))), store.ErrTokenReplayed)
	wantResults(t, commit(t, s, issuance("tok-2", newCert("a.example.com"))), nil)
	if err := s.ConsumeToken(ctx, "tok-2", epoch); !errors.Is(err, store.ErrTokenReplayed) {
		t.Errorf("ConsumeToken of a committed token = %v, want ErrTokenReplayed", err)
	}
}

func testPruneTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	for id, expires := range map[string]time.Time{
		"tok-expired":  epoch.Add(-time.Minute),
		"tok-boundary": epoch,
		"tok-live":     epoch.Add(time.Minute),
	} {
		if err := s.ConsumeToken(ctx, id, expires); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PruneTokens(ctx, epoch); err != nil {
		t.Fatalf("PruneTokens: %v", err)
	}
	if err := s.ConsumeToken(ctx, "tok-expired", epoch); err != nil {
		t.Errorf("expired token id not forgotten: %v", err)
	}
	for _, id := range []string{"tok-boundary", "tok-live"} {
		if err := s.ConsumeToken(ctx, id, epoch); !errors.Is(err, store.ErrTokenReplayed) {
			t.Errorf("%s: ConsumeToken after prune = %v, want ErrTokenReplayed", id, err)
		}
	}
}

func testRevoke(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCert("a.example.com")
	wantResults(t, commit(t, s, issuance("", c)), nil)
	at := epoch.Add(10 * time.Minute)
	ev := newEvent(audit.TypeCertificateRevoked, c.Serial)
	if err := revokeOne(ctx, s, c.Serial, 1, at, ev); err != nil {
		t.Fatalf("RevokeCertificate: %v", err)
	}
	want := *c
	want.Status, want.RevokedAt, want.RevocationReason = store.StatusRevoked, at, 1
	checkCert(t, mustGet(t, s, c.Serial), want)
	events := allAudit(t, s)
	if len(events) != 2 || events[1].Type != audit.TypeCertificateRevoked || events[1].Subject != string(c.Serial) {
		t.Errorf("audit log %v, want the issuance then the revocation", auditSubjects(events))
	}
}

// testRevokeRenewals: root → a → b, root → c (already revoked), and an
// unrelated certificate. Revoking root with its renewals revokes a and b
// (not c again, not the other), in one transaction with one audit record
// each; without Renewals only root is revoked.
func testRevokeRenewals(t *testing.T, s store.Store) {
	ctx := context.Background()
	root, other := newCert("root.example.com"), newCert("other.example.com")
	a, c := newCert("a.example.com"), newCert("c.example.com")
	a.RenewedFrom, c.RenewedFrom = root.Serial, root.Serial
	defer func() {
		if got := listAll(t, s, store.CertFilter{RenewedFrom: root.Serial}); !slices.Equal(got, sorted(a, c)) {
			t.Errorf("renewals of root: %v, want %v", got, sorted(a, c))
		}
	}()
	b := newCert("b.example.com")
	b.RenewedFrom = a.Serial
	wantResults(t, commit(t, s, issuance("", root), issuance("", other), issuance("", a), issuance("", c), issuance("", b)), nil, nil, nil, nil, nil)
	if err := revokeOne(ctx, s, c.Serial, 4, epoch, newEvent(audit.TypeCertificateRevoked, c.Serial)); err != nil {
		t.Fatal(err)
	}
	before := head(t, s)
	at := epoch.Add(time.Minute)
	got, err := s.RevokeCertificate(ctx, store.Revocation{Serial: root.Serial, Reason: 1, At: at, Event: newEvent(audit.TypeCertificateRevoked, root.Serial),
		Renewals: true, RenewalEvent: func(serial store.Serial) audit.Event { return newEvent(audit.TypeCertificateRevoked, serial) }})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Serial{a.Serial, b.Serial}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("renewals revoked %v, want %v", got, want)
	}
	for _, c := range []*store.Certificate{root, a, b} {
		if rec := mustGet(t, s, c.Serial); rec.Status != store.StatusRevoked || rec.RevocationReason != 1 || !rec.RevokedAt.Equal(µs(at)) {
			t.Errorf("%s: %s reason %d at %s", c.Subject, rec.Status, rec.RevocationReason, rec.RevokedAt)
		}
	}
	if rec := mustGet(t, s, c.Serial); rec.RevocationReason != 4 {
		t.Errorf("the renewal revoked earlier changed: reason %d", rec.RevocationReason)
	}
	if rec := mustGet(t, s, other.Serial); rec.Status != store.StatusValid {
		t.Errorf("an unrelated certificate is %s", rec.Status)
	}
	if n := head(t, s) - before; n != 3 {
		t.Errorf("%d audit records, want 3 (the certificate and its two renewals)", n)
	}
}

func testRevokeNotFound(t *testing.T, s store.Store) {
	err := revokeOne(context.Background(), s, "abc", 0, epoch, newEvent(audit.TypeCertificateRevoked, "abc"))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeCertificate(unknown) = %v, want ErrNotFound", err)
	}
	if got := head(t, s); got != 0 {
		t.Errorf("audit head %d after a failed revocation, want 0", got)
	}
}

func testRevokeTwice(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCert("a.example.com")
	wantResults(t, commit(t, s, issuance("", c)), nil)
	if err := revokeOne(ctx, s, c.Serial, 1, epoch, newEvent(audit.TypeCertificateRevoked, c.Serial)); err != nil {
		t.Fatal(err)
	}
	err := revokeOne(ctx, s, c.Serial, 4, epoch.Add(time.Hour), newEvent(audit.TypeCertificateRevoked, c.Serial))
	if !errors.Is(err, store.ErrAlreadyRevoked) {
		t.Errorf("second RevokeCertificate = %v, want ErrAlreadyRevoked", err)
	}
	want := *c
	want.Status, want.RevokedAt, want.RevocationReason = store.StatusRevoked, epoch, 1
	checkCert(t, mustGet(t, s, c.Serial), want)
	if got := head(t, s); got != 2 {
		t.Errorf("audit head %d, want 2 (the refused revocation appends nothing)", got)
	}
}

// listAll pages through f, checking pages are in order without duplicates,
// and returns the serials.
func listAll(t testing.TB, s store.Store, f store.CertFilter) []string {
	t.Helper()
	var serials []string
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("ListCertificates never reached the last page")
		}
		page, err := s.ListCertificates(context.Background(), f)
		if err != nil {
			t.Fatalf("ListCertificates(%+v): %v", f, err)
		}
		if f.Limit > 0 && len(page.Certificates) > f.Limit {
			t.Fatalf("page of %d certificates, limit %d", len(page.Certificates), f.Limit)
		}
		for _, c := range page.Certificates {
			if n := len(serials); n > 0 && string(c.Serial) <= serials[n-1] {
				t.Fatalf("serial %s listed after %s: not in order or repeated", c.Serial, serials[n-1])
			}
			serials = append(serials, string(c.Serial))
		}
		if page.Next == "" {
			return serials
		}
		if len(page.Certificates) == 0 {
			t.Fatal("empty page with a Next cursor")
		}
		f.After = page.Next
	}
}

// sorted returns the serials of certs in listing order.
func sorted(certs ...*store.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = string(c.Serial)
	}
	slices.Sort(out)
	return out
}

func testListByName(t *testing.T, s store.Store) {
	bySubject := newCert("api.example.com")
	bySAN := newCert("worker", "api.example.com", "10.0.0.7")
	other := newCert("db.example.com", "db.example.com", "spiffe://example.com/db")
	wantResults(t, commit(t, s, issuance("", bySubject), issuance("", bySAN), issuance("", other)), nil, nil, nil)

	for _, tc := range []struct {
		name string
		want []string
	}{
		{"api.example.com", sorted(bySubject, bySAN)},
		{"10.0.0.7", sorted(bySAN)},
		{"spiffe://example.com/db", sorted(other)},
		{"worker", sorted(bySAN)},
		{"example.com", nil},
		{"API.example.com", nil},
	} {
		if got := listAll(t, s, store.CertFilter{Name: tc.name}); !slices.Equal(got, tc.want) {
			t.Errorf("Name %q: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testListByStatus(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := epoch
	live := newCert("live.example.com")
	live.NotAfter = now.Add(time.Hour)
	lastMoment := newCert("last-moment.example.com")
	lastMoment.NotAfter = now
	expired := newCert("expired.example.com")
	expired.NotAfter = now.Add(-time.Hour)
	revokedLive := newCert("revoked-live.example.com")
	revokedLive.NotAfter = now.Add(time.Hour)
	revokedExpired := newCert("revoked-expired.example.com")
	revokedExpired.NotAfter = now.Add(-time.Hour)
	all := []*store.Certificate{live, lastMoment, expired, revokedLive, revokedExpired}
	var items []store.Issuance
	for _, c := range all {
		items = append(items, issuance("", c))
	}
	wantResults(t, commit(t, s, items...), nil, nil, nil, nil, nil)
	for _, c := range []*store.Certificate{revokedLive, revokedExpired} {
		if err := revokeOne(ctx, s, c.Serial, 0, now.Add(-2*time.Hour), newEvent(audit.TypeCertificateRevoked, c.Serial)); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		f    store.CertFilter
		want []string
	}{
		{"all", store.CertFilter{Now: now}, sorted(all...)},
		{"valid includes NotAfter equal to now", store.CertFilter{Status: store.StatusValid, Now: now}, sorted(live, lastMoment)},
		{"expired", store.CertFilter{Status: store.StatusExpired, Now: now}, sorted(expired)},
		{"revoked whether or not expired", store.CertFilter{Status: store.StatusRevoked, Now: now}, sorted(revokedLive, revokedExpired)},
		{"expiring before is strict", store.CertFilter{ExpiringBefore: now}, sorted(expired, revokedExpired)},
		{"expiring soon", store.CertFilter{ExpiringBefore: now.Add(2 * time.Hour)}, sorted(all...)},
		{"valid and expiring soon", store.CertFilter{Status: store.StatusValid, Now: now, ExpiringBefore: now.Add(time.Minute)}, sorted(lastMoment)},
		{"later now expires more", store.CertFilter{Status: store.StatusExpired, Now: now.Add(90 * time.Minute)}, sorted(live, lastMoment, expired)},
		{"name and status", store.CertFilter{Name: "live.example.com", Status: store.StatusValid, Now: now}, sorted(live)},
		{"name and other status", store.CertFilter{Name: "live.example.com", Status: store.StatusRevoked, Now: now}, nil},
	} {
		if got := listAll(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := s.ListCertificates(ctx, store.CertFilter{Status: "bogus"}); err == nil {
		t.Error("unknown status filter accepted")
	}
}

func testListStatusClock(t *testing.T, s store.Store) {
	live := newCert("live.example.com")
	live.NotAfter = time.Now().Add(time.Hour)
	expired := newCert("expired.example.com")
	expired.NotAfter = time.Now().Add(-time.Hour)
	wantResults(t, commit(t, s, issuance("", live), issuance("", expired)), nil, nil)
	if got := listAll(t, s, store.CertFilter{Status: store.StatusValid}); !slices.Equal(got, sorted(live)) {
		t.Errorf("valid with zero Now: got %v, want %v", got, sorted(live))
	}
	if got := listAll(t, s, store.CertFilter{Status: store.StatusExpired}); !slices.Equal(got, sorted(expired)) {
		t.Errorf("expired with zero Now: got %v, want %v", got, sorted(expired))
	}
}

// commitMany records n certificates, every third also named shared.example.com.
func commitMany(t testing.TB, s store.Store, n int) (all, shared []string) {
	var items []store.Issuance
	for i := range n {
		c := newCert(fmt.Sprintf("host-%d.example.com", i))
		if i%3 == 0 {
			c.Names = []string{"shared.example.com"}
			shared = append(shared, string(c.Serial))
		}
		all = append(all, string(c.Serial))
		items = append(items, issuance("", c))
		if len(items) == 250 || i == n-1 {
			for i, err := range commit(t, s, items...) {
				if err != nil {
					t.Fatalf("item %d: %v", i, err)
				}
			}
			items = items[:0]
		}
	}
	slices.Sort(all)
	slices.Sort(shared)
	return all, shared
}

func testListPages(t *testing.T, s store.Store) {
	all, shared := commitMany(t, s, 203)
	for _, limit := range []int{1, 7, 50, 203, 500} {
		if got := listAll(t, s, store.CertFilter{Limit: limit}); !slices.Equal(got, all) {
			t.Errorf("limit %d: listed %d certificates, want the %d committed", limit, len(got), len(all))
		}
		if got := listAll(t, s, store.CertFilter{Limit: limit, Name: "shared.example.com"}); !slices.Equal(got, shared) {
			t.Errorf("limit %d, by name: listed %d certificates, want %d", limit, len(got), len(shared))
		}
	}
	// Exactly one page: no Next.
	page, err := s.ListCertificates(context.Background(), store.CertFilter{Limit: len(all)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Certificates) != len(all) || page.Next != "" {
		t.Errorf("limit equal to the count: %d certificates, Next %q; want all and no Next", len(page.Certificates), page.Next)
	}
}

func testListPageSize(t *testing.T, s store.Store) {
	ctx := context.Background()
	all, _ := commitMany(t, s, 1001)
	for _, tc := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {5000, 1000}} {
		page, err := s.ListCertificates(ctx, store.CertFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Certificates) != tc.want || page.Next != all[tc.want-1] {
			t.Errorf("limit %d: page of %d, Next %q; want %d and Next %q", tc.limit, len(page.Certificates), page.Next, tc.want, all[tc.want-1])
		}
	}
	page, err := s.ListCertificates(ctx, store.CertFilter{Limit: 5000, After: all[999]})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Certificates) != 1 || string(page.Certificates[0].Serial) != all[1000] || page.Next != "" {
		t.Errorf("last page: %d certificates, Next %q; want the last one and no Next", len(page.Certificates), page.Next)
	}
}

func goodPolicy() policy.Policy {
	return policy.Policy{
		AllowDNS:   []string{"*.example.com"},
		DenyDNS:    []string{"*.prod.example.com"},
		AllowIP:    []string{"10.0.0.0/8"},
		AllowURI:   []string{"spiffe://example.com/"},
		AllowEmail: []string{"@example.com"},
		DefaultTTL: policy.Duration(time.Hour),
		MaxTTL:     policy.Duration(24 * time.Hour),
		KeyTypes:   []keys.KeyType{keys.ECP256, keys.Ed25519},
		Issuer:     "default",
	}
}

func checkProvisioner(t testing.TB, got, want store.Provisioner) {
	t.Helper()
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	if got.Name != want.Name || got.Type != want.Type || !reflect.DeepEqual(got.Policy, want.Policy) || got.RequireEAB != want.RequireEAB || !slices.Equal(got.Nodes, want.Nodes) {
		t.Errorf("provisioner round trip:\n got %+v\nwant %+v", got, want)
	}
}

func testProvisionerLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	p := store.Provisioner{Name: "good-ci", Type: "token", Policy: goodPolicy(), CreatedAt: epoch, UpdatedAt: epoch}
	if err := s.CreateProvisioner(ctx, p, newEvent(audit.TypeProvisionerAdded, p.Name)); err != nil {
		t.Fatalf("CreateProvisioner: %v", err)
	}
	got, err := s.GetProvisioner(ctx, p.Name)
	if err != nil {
		t.Fatalf("GetProvisioner: %v", err)
	}
	checkProvisioner(t, got, p)

	updated := p
	updated.Type = store.ProvisionerNode
	updated.Policy = policy.Policy{AllowDNS: []string{"*.internal"}}
	updated.Nodes = []string{"spiffe://example.org/node/web-1", "x509pop:subject:cn:web-2"}
	updated.CreatedAt = time.Time{} // the store keeps the original
	updated.UpdatedAt = epoch.Add(time.Hour)
	if err := s.UpdateProvisioner(ctx, updated, newEvent(audit.TypeProvisionerUpdated, p.Name)); err != nil {
		t.Fatalf("UpdateProvisioner: %v", err)
	}
	got, err = s.GetProvisioner(ctx, p.Name)
	if err != nil {
		t.Fatalf("GetProvisioner after update: %v", err)
	}
	updated.CreatedAt = p.CreatedAt
	checkProvisioner(t, got, updated)

	if err := s.DeleteProvisioner(ctx, p.Name, newEvent(audit.TypeProvisionerRemoved, p.Name)); err != nil {
		t.Fatalf("DeleteProvisioner: %v", err)
	}
	if _, err := s.GetProvisioner(ctx, p.Name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetProvisioner after delete = %v, want ErrNotFound", err)
	}
	want := []string{
		audit.TypeProvisionerAdded + ":" + p.Name,
		audit.TypeProvisionerUpdated + ":" + p.Name,
		audit.TypeProvisionerRemoved + ":" + p.Name,
	}
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, want) {
		t.Errorf("audit log %v, want %v", got, want)
	}

	// Zero times are set by the store.
	before := time.Now().Truncate(time.Microsecond)
	fresh := store.Provisioner{Name: "good-fresh", Type: "token"}
	if err := s.CreateProvisioner(ctx, fresh, newEvent(audit.TypeProvisionerAdded, fresh.Name)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateProvisioner(ctx, fresh, newEvent(audit.TypeProvisionerUpdated, fresh.Name)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got, err = s.GetProvisioner(ctx, fresh.Name)
	if err != nil {
		t.Fatal(err)
	}
	for field, v := range map[string]time.Time{"CreatedAt": got.CreatedAt, "UpdatedAt": got.UpdatedAt} {
		if v.Before(before) || v.After(after) {
			t.Errorf("zero %s recorded as %v, want the time of the write", field, v)
		}
	}
}

func testOperatorLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	ops := []store.Operator{
		{Name: "bootstrap", Role: store.RoleAdmin, CreatedAt: epoch},
		{Name: "alice", Role: store.RoleOperator, Provisioners: []string{"web", "acme"}, CreatedAt: epoch.Add(time.Second)},
	}
	for _, op := range ops {
		if err := s.CreateOperator(ctx, op, newEvent("operator.added", op.Name)); err != nil {
			t.Fatalf("CreateOperator %s: %v", op.Name, err)
		}
	}
	if err := s.CreateOperator(ctx, store.Operator{Name: "alice", Role: store.RoleViewer}, newEvent("operator.added", "alice")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second alice: %v, want ErrConflict", err)
	}
	if err := s.CreateOperator(ctx, store.Operator{Name: "bad-role", Role: "root"}, newEvent("operator.added", "bad-role")); err == nil {
		t.Error("an unknown role was stored")
	}
	ext := store.Operator{Name: "carol", Role: store.RoleAuditor, Identity: "spiffe://corp.example/ops/carol", CreatedAt: epoch}
	if err := s.CreateOperator(ctx, ext, newEvent("operator.added", "carol")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOperator(ctx, store.Operator{Name: "carol2", Role: store.RoleAdmin, Identity: ext.Identity}, newEvent("operator.added", "carol2")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second operator with carol's identity: %v, want ErrConflict", err)
	}
	if got, err := s.GetOperatorByIdentity(ctx, ext.Identity); err != nil || got.Name != "carol" || got.Role != store.RoleAuditor {
		t.Errorf("GetOperatorByIdentity: %+v %v", got, err)
	}
	for _, id := range []string{"", "spiffe://corp.example/ops/nobody"} {
		if _, err := s.GetOperatorByIdentity(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOperatorByIdentity(%q): %v", id, err)
		}
	}
	got, err := s.GetOperator(ctx, "alice")
	if err != nil || got.Role != store.RoleOperator || !slices.Equal(got.Provisioners, []string{"web", "acme"}) || !got.CreatedAt.Equal(epoch.Add(time.Second).Truncate(time.Microsecond)) || !got.RetiredAt.IsZero() {
		t.Fatalf("GetOperator alice: %+v %v", got, err)
	}
	if err := s.RetireOperator(ctx, "bootstrap", epoch.Add(time.Hour), newEvent("operator.retired", "bootstrap")); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireOperator(ctx, "bootstrap", epoch.Add(2*time.Hour), newEvent("operator.retired", "bootstrap")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retiring twice: %v, want ErrNotFound", err)
	}
	if err := s.RetireOperator(ctx, "nobody", epoch, newEvent("operator.retired", "nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retiring nobody: %v, want ErrNotFound", err)
	}
	list, err := s.ListOperators(ctx)
	if err != nil || len(list) != 3 || list[0].Name != "alice" || list[1].Name != "bootstrap" || !list[1].RetiredAt.Equal(epoch.Add(time.Hour).Truncate(time.Microsecond)) || list[2].Identity != ext.Identity {
		t.Fatalf("ListOperators: %+v %v", list, err)
	}
	if _, err := s.GetOperator(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOperator nobody: %v", err)
	}
	want := []string{"operator.added:bootstrap", "operator.added:alice", "operator.added:carol", "operator.retired:bootstrap"}
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, want) {
		t.Errorf("audit log %v, want %v", got, want)
	}
}

func testProvisionerErrors(t *testing.T, s store.Store) {
	ctx := context.Background()
	p := store.Provisioner{Name: "good-ci", Type: "token", Policy: goodPolicy(), CreatedAt: epoch, UpdatedAt: epoch}
	if err := s.CreateProvisioner(ctx, p, newEvent(audit.TypeProvisionerAdded, p.Name)); err != nil {
		t.Fatal(err)
	}
	clash := store.Provisioner{Name: p.Name, Type: "acme"}
	if err := s.CreateProvisioner(ctx, clash, newEvent(audit.TypeProvisionerAdded, p.Name)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateProvisioner(existing) = %v, want ErrConflict", err)
	}
	missing := store.Provisioner{Name: "bad-missing", Type: "token"}
	if err := s.UpdateProvisioner(ctx, missing, newEvent(audit.TypeProvisionerUpdated, missing.Name)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateProvisioner(missing) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteProvisioner(ctx, missing.Name, newEvent(audit.TypeProvisionerRemoved, missing.Name)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteProvisioner(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetProvisioner(ctx, missing.Name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetProvisioner(missing) = %v, want ErrNotFound", err)
	}
	got, err := s.GetProvisioner(ctx, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkProvisioner(t, got, p)
	if all, err := s.ListProvisioners(ctx); err != nil || len(all) != 1 {
		t.Errorf("ListProvisioners = %d provisioners, %v; want 1", len(all), err)
	}
	if got := head(t, s); got != 1 {
		t.Errorf("audit head %d, want 1 (failed changes append nothing)", got)
	}
}

func testListProvisioners(t *testing.T, s store.Store) {
	ctx := context.Background()
	if all, err := s.ListProvisioners(ctx); err != nil || len(all) != 0 {
		t.Fatalf("ListProvisioners on an empty store = %v, %v", all, err)
	}
	names := []string{"good-m", "Good-Z", "good-a", "good-b2", "good-b10"}
	for _, name := range names {
		if err := s.CreateProvisioner(ctx, store.Provisioner{Name: name, Type: "token", Policy: goodPolicy()}, newEvent(audit.TypeProvisionerAdded, name)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListProvisioners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range all {
		got = append(got, p.Name)
		if !reflect.DeepEqual(p.Policy, goodPolicy()) {
			t.Errorf("%s: policy %+v, want %+v", p.Name, p.Policy, goodPolicy())
		}
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListProvisioners order %v, want %v", got, want)
	}
}

func testAuditEmpty(t *testing.T, s store.Store) {
	seq, hash, err := s.AuditHead(context.Background())
	if err != nil || seq != 0 || !bytes.Equal(hash, audit.GenesisHash) {
		t.Errorf("AuditHead of an empty log = %d, %x, %v; want 0 and the genesis hash", seq, hash, err)
	}
	events, err := s.ListAudit(context.Background(), 0, 10)
	if err != nil || len(events) != 0 {
		t.Errorf("ListAudit of an empty log = %v, %v", events, err)
	}
	if rep := allAudit(t, s); len(rep) != 0 {
		t.Errorf("empty log verified with %d records", len(rep))
	}
}

func testAuditAppend(t *testing.T, s store.Store) {
	ctx := context.Background()
	var sent []audit.Event
	for i := range 8 {
		e := newEvent(audit.TypeCertificateIssued, fmt.Sprintf("subject-%d", i))
		e.Time = epoch.Add(time.Duration(i) * 1001 * time.Nanosecond)
		if i == 3 {
			e.Detail = nil
		}
		sent = append(sent, e)
	}
	if err := s.AppendAudit(ctx, sent[:5]...); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.AppendAudit(ctx, sent[5:]...); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.AppendAudit(ctx); err != nil {
		t.Fatalf("AppendAudit(): %v", err)
	}
	if sent[0].Seq != 0 || sent[0].Hash != nil {
		t.Error("AppendAudit changed the caller's events")
	}

	got := allAudit(t, s)
	if len(got) != len(sent) {
		t.Fatalf("log has %d records, want %d", len(got), len(sent))
	}
	prev := audit.GenesisHash
	for i, e := range got {
		want := sent[i]
		audit.Seal(&want, int64(i+1), prev)
		if !reflect.DeepEqual(e, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i+1, e, want)
		}
		prev = e.Hash
	}
	seq, hash, err := s.AuditHead(ctx)
	if err != nil || seq != 8 || !bytes.Equal(hash, got[7].Hash) {
		t.Errorf("AuditHead = %d, %x, %v; want 8, %x", seq, hash, err, got[7].Hash)
	}
}

func testAuditPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	var events []audit.Event
	for i := range 25 {
		events = append(events, newEvent(audit.TypeRequestDenied, fmt.Sprint(i)))
	}
	if err := s.AppendAudit(ctx, events...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after         int64
		limit         int
		first, number int64
	}{
		{0, 10, 1, 10},
		{10, 10, 11, 10},
		{20, 10, 21, 5},
		{25, 10, 0, 0},
		{3, 1, 4, 1},
	} {
		got, err := s.ListAudit(ctx, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != tc.number || (len(got) > 0 && got[0].Seq != tc.first) {
			t.Errorf("ListAudit(%d, %d): %d records from %v, want %d from %d", tc.after, tc.limit, len(got), got, tc.number, tc.first)
		}
	}
}

func testCertificateAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b, silent := newCert("a.example.com"), newCert("b.example.com"), newCert("c.example.com")
	b.RenewedFrom = a.Serial
	renewed := issuance("tok-b", b)
	renewed.Audit = append(renewed.Audit, newEvent(audit.TypeCertificateRenewed, b.Serial))
	quiet := issuance("tok-c", silent)
	quiet.Audit = nil
	commit(t, s, issuance("tok-a", a), renewed, quiet)
	// Records about other things, and about a.Serial of types that are
	// not a certificate's, stay out of its trail.
	if err := s.AppendAudit(ctx, newEvent(audit.TypeTokenCreated, a.Serial), newEvent(audit.TypeRequestDenied, b.Serial),
		newEvent(audit.TypeRequestDenied, "someone-else")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeCertificate(ctx, store.Revocation{Serial: a.Serial, Reason: 1, Event: newEvent(audit.TypeCertificateRevoked, a.Serial)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, newEvent(audit.TypeRequestDenied, a.Serial)); err != nil {
		t.Fatal(err)
	}
	all := allAudit(t, s)
	trail := func(sn store.Serial, limit int) (types []string) {
		t.Helper()
		got, err := s.CertificateAudit(ctx, sn, limit)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if e.Subject != string(sn) || !reflect.DeepEqual(e, all[e.Seq-1]) || (i > 0 && e.Seq >= got[i-1].Seq) {
				t.Errorf("CertificateAudit(%s) record %d: %+v", sn, i, e)
			}
			types = append(types, e.Type)
		}
		return types
	}
	for _, tc := range []struct {
		serial store.Serial
		limit  int
		want   []string
	}{
		{a.Serial, 0, []string{audit.TypeRequestDenied, audit.TypeCertificateRevoked, audit.TypeCertificateIssued}},
		{a.Serial, 2, []string{audit.TypeRequestDenied, audit.TypeCertificateRevoked}},
		{b.Serial, 10, []string{audit.TypeRequestDenied, audit.TypeCertificateRenewed, audit.TypeCertificateIssued}},
		{silent.Serial, 10, nil},
		{"0123", 10, nil},
	} {
		if got := trail(tc.serial, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("CertificateAudit(%s, %d) = %v, want %v", tc.serial, tc.limit, got, tc.want)
		}
	}
	many := issuance("tok-many", newCert("d.example.com"))
	for range 8 {
		many.Audit = append(many.Audit, newEvent(audit.TypeCertificateIssued, many.Certificate.Serial))
	}
	if _, err := s.CommitIssuances(ctx, []store.Issuance{many}); err == nil {
		t.Error("an issuance with 9 audit records was committed")
	}
}

func testAuditFromWrites(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCert("a.example.com")
	item := issuance("tok-1", c)
	item.Audit = append(item.Audit, newEvent(audit.TypeCertificateRenewed, c.Serial))
	wantResults(t, commit(t, s, item), nil)
	if err := revokeOne(ctx, s, c.Serial, 0, epoch, newEvent(audit.TypeCertificateRevoked, c.Serial)); err != nil {
		t.Fatal(err)
	}
	p := store.Provisioner{Name: "good-ci", Type: "token"}
	if err := s.CreateProvisioner(ctx, p, newEvent(audit.TypeProvisionerAdded, p.Name)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateProvisioner(ctx, p, newEvent(audit.TypeProvisionerUpdated, p.Name)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProvisioner(ctx, p.Name, newEvent(audit.TypeProvisionerRemoved, p.Name)); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, newEvent(audit.TypeCAInitialized, "ca")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		audit.TypeCertificateIssued + ":" + string(c.Serial),
		audit.TypeCertificateRenewed + ":" + string(c.Serial),
		audit.TypeCertificateRevoked + ":" + string(c.Serial),
		audit.TypeProvisionerAdded + ":" + p.Name,
		audit.TypeProvisionerUpdated + ":" + p.Name,
		audit.TypeProvisionerRemoved + ":" + p.Name,
		audit.TypeCAInitialized + ":ca",
	}
	events := allAudit(t, s)
	if got := auditSubjects(events); !slices.Equal(got, want) {
		t.Errorf("audit log\n got %v\nwant %v", got, want)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Errorf("record %d has Seq %d", i+1, e.Seq)
		}
	}
}

// CheckConcurrentCommits commits from 16 goroutines at once to every store in
// stores in turn (one store, or several sharing a database as replicas do) and
// checks that nothing is lost, nothing is written twice, a token shared by all
// is accepted once, and the audit chain is intact.
func CheckConcurrentCommits(t *testing.T, stores ...store.Store) {
	const (
		workers = 16
		batches = 4
		perItem = 16
	)
	ctx := context.Background()
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		serials    []string
		sharedWins int
	)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for b := range batches {
				var items []store.Issuance
				for i := range perItem {
					items = append(items, issuance(fmt.Sprintf("tok-%d-%d-%d", w, b, i), newCert("host.example.com")))
				}
				shared := issuance("tok-shared", newCert("shared.example.com"))
				items = append(items, shared)
				results, err := s.CommitIssuances(ctx, items)
				if err != nil {
					t.Errorf("worker %d: CommitIssuances: %v", w, err)
					return
				}
				mu.Lock()
				for i, err := range results[:perItem] {
					if err != nil {
						t.Errorf("worker %d item %d: %v", w, i, err)
					}
					serials = append(serials, string(items[i].Certificate.Serial))
				}
				switch err := results[perItem]; {
				case err == nil:
					sharedWins++
					serials = append(serials, string(shared.Certificate.Serial))
				case !errors.Is(err, store.ErrTokenReplayed):
					t.Errorf("worker %d shared token: %v, want ErrTokenReplayed", w, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if sharedWins != 1 {
		t.Errorf("shared token accepted %d times, want once", sharedWins)
	}
	slices.Sort(serials)
	for _, s := range stores {
		if got := listAll(t, s, store.CertFilter{Limit: 1000}); !slices.Equal(got, serials) {
			t.Errorf("listed %d certificates, want the %d written", len(got), len(serials))
		}
	}
	events := allAudit(t, stores[0])
	if len(events) != len(serials) {
		t.Errorf("audit log has %d records, want one per certificate (%d)", len(events), len(serials))
	}
	var subjects []string
	for _, e := range events {
		subjects = append(subjects, e.Subject)
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, serials) {
		t.Error("audit records do not name exactly the certificates written")
	}
}

func testConcurrentCommits(t *testing.T, s store.Store) {
	CheckConcurrentCommits(t, s)
}

// Many goroutines make small audited writes at once, some of them refused,
// as the stores that commit concurrent writes together see them: every
// accepted write's event is in the log once, no refused write's is, and the
// chain verifies.
func testConcurrentAuditedWrites(t *testing.T, s store.Store) {
	const (
		workers = 16
		each    = 12
	)
	ctx := context.Background()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []string
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				var (
					subject string
					err     error
				)
				switch i % 4 {
				case 0: // one create per name is accepted, the others conflict
					subject = fmt.Sprintf("good-p%d", i)
					err = s.CreateProvisioner(ctx, store.Provisioner{Name: subject, Type: "token"}, newEvent(audit.TypeProvisionerAdded, subject))
					if errors.Is(err, store.ErrConflict) {
						continue
					}
				case 1:
					subject = fmt.Sprintf("good-w%d-%d", w, i)
					err = s.CreateProvisioner(ctx, store.Provisioner{Name: subject, Type: "token"}, newEvent(audit.TypeProvisionerAdded, subject))
				case 2: // tokens append nothing; the shared one is accepted once
					if err := s.ConsumeToken(ctx, fmt.Sprintf("tok-%d-%d", w, i), epoch); err != nil {
						t.Errorf("ConsumeToken: %v", err)
					}
					if err := s.ConsumeToken(ctx, "tok-shared", epoch); err != nil && !errors.Is(err, store.ErrTokenReplayed) {
						t.Errorf("ConsumeToken(shared): %v", err)
					}
					continue
				case 3:
					subject = fmt.Sprintf("denied-%d-%d", w, i)
					err = s.AppendAudit(ctx, newEvent(audit.TypeRequestDenied, subject))
				}
				if err != nil {
					t.Errorf("%s: %v", subject, err)
					continue
				}
				mu.Lock()
				accepted = append(accepted, subject)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var logged []string
	for _, e := range allAudit(t, s) {
		logged = append(logged, e.Subject)
	}
	slices.Sort(logged)
	slices.Sort(accepted)
	if !slices.Equal(logged, accepted) {
		t.Errorf("audit log names %d subjects, want the %d writes accepted", len(logged), len(accepted))
	}
	all, err := s.ListProvisioners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers*each/4 + each/4; len(all) != want {
		t.Errorf("%d provisioners, want %d", len(all), want)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// revokeOne revokes one certificate, without its renewals.
func revokeOne(ctx context.Context, s store.Store, serial store.Serial, reason int, at time.Time, ev audit.Event) error {
	_, err := s.RevokeCertificate(ctx, store.Revocation{Serial: serial, Reason: reason, At: at, Event: ev})
	return err
}

// CheckLeadership checks that of two stores sharing one database (as
// replicas do) one session at a time leads a name: the other waits until
// the leader closes, leading one name does not hold another, and a
// session asked again keeps leading without a second hold.
func CheckLeadership(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	open := func(s store.Store, name string) store.LeaderSession {
		t.Helper()
		sess, err := s.LeaderSession(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close() })
		return sess
	}
	try := func(sess store.LeaderSession) bool {
		t.Helper()
		ok, err := sess.TryLead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	sa, sb := open(a, "jobs"), open(b, "jobs")
	if !try(sa) {
		t.Fatal("a free leadership was not taken")
	}
	if try(sb) {
		t.Fatal("a second session leads while the first does")
	}
	if !try(sa) || sa.Check(ctx) != nil {
		t.Fatal("the leader, asked again, no longer leads")
	}
	if other := open(b, "other"); !try(other) {
		t.Fatal("leading one name held another")
	}
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	if !try(sb) {
		t.Fatal("the leadership was not free once its leader closed")
	}
	if sa2 := open(a, "jobs"); try(sa2) {
		t.Fatal("a new session took the leadership from a live leader")
	}
}

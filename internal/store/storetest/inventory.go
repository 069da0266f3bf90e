package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

var inventoryTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"InventoryRecordListAndGet", testInventoryRoundTrip},
	{"InventoryNewestCertificateIsCurrentAtItsLocation", testInventoryCurrent},
	{"InventoryAlternatingRolloutDoesNotFlap", testInventoryAlternating},
	{"InventoryGoneFromScopeStopsBeingActive", testInventoryGone},
	{"InventoryMergesSourcesInExpiryOrder", testInventoryMerge},
	{"InventoryFilters", testInventoryFilters},
	{"InventoryPagesWithoutGapsOrDuplicates", testInventoryPages},
	{"InventoryBadCursor", testInventoryBadCursor},
	{"ScheduleLifecycle", testScheduleLifecycle},
	{"ScheduleClaimedOnce", testScheduleClaimedOnce},
	{"UnfinishedSchedulesReleased", testSchedulesReleased},
	{"RevokeMatchingByNameAndIssuer", testRevokeMatching},
}

// fakeChainCert is a DER SEQUENCE of random bytes: a certificate as far as
// the store can tell.
func fakeChainCert() []byte {
	b := make([]byte, 34)
	b[0], b[1] = 0x30, 32
	rand.Read(b[2:])
	return b
}

// observed is an observation of a new two-certificate chain at location
// under scope, expiring at notAfter.
func observed(scope, location, subject string, notAfter time.Time, names ...string) store.Observation {
	leaf := fakeChainCert()
	sum := sha256.Sum256(leaf)
	return store.Observation{
		Scope: scope, Location: location,
		Chain:       [][]byte{leaf, fakeChainCert()},
		Fingerprint: hex.EncodeToString(sum[:]),
		Serial:      newSerial(),
		Subject:     "CN=" + subject + ",O=Example",
		IssuerDN:    "CN=Example CA",
		Names:       names,
		NotBefore:   notAfter.Add(-90 * 24 * time.Hour),
		NotAfter:    notAfter,
		Findings:    []store.StoredFinding{{Check: "hostname_mismatch", Severity: "error", Message: "not valid for " + location}},
	}
}

func record(t testing.TB, s store.Store, at time.Time, hold time.Duration, scopes []string, obs ...store.Observation) {
	t.Helper()
	if err := s.RecordScan(context.Background(), store.ScanRun{At: at, Scopes: scopes, Hold: hold, Observations: obs}); err != nil {
		t.Fatal(err)
	}
}

func listInventory(t testing.TB, s store.Store, f store.InventoryFilter) store.InventoryPage {
	t.Helper()
	page, err := s.ListInventory(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

func getScanned(t testing.TB, s store.Store, fingerprint string) (store.InventoryItem, []store.Sighting) {
	t.Helper()
	it, sightings, err := s.GetScanned(context.Background(), fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return it, sightings
}

// currentAt maps each location of a scanned certificate to whether it is
// current there.
func currentAt(t testing.TB, s store.Store, fingerprint string) map[string]bool {
	t.Helper()
	_, sightings := getScanned(t, s, fingerprint)
	out := map[string]bool{}
	for _, sg := range sightings {
		out[sg.Location] = sg.Current
	}
	return out
}

func testInventoryRoundTrip(t *testing.T, s store.Store) {
	o := observed("10.0.0.0/30:443", "10.0.0.1:443", "web", epoch.Add(30*24*time.Hour), "web.example", "10.0.0.1")
	o.Labels = map[string]string{"team": "edge"}
	record(t, s, epoch, time.Hour, []string{o.Scope}, o)
	// Seen again, later, at a second location of another scope.
	o2 := o
	o2.Scope, o2.Location = "web.example:8443", "web.example:8443"
	o2.Findings = nil
	o2.Labels = map[string]string{"team": "web", "env": "prod"}
	record(t, s, epoch.Add(time.Minute), time.Hour, []string{o2.Scope}, o2)

	it, sightings := getScanned(t, s, o.Fingerprint)
	if it.Source != store.SourceScanned || it.Fingerprint != o.Fingerprint || it.Serial != o.Serial ||
		it.Subject != o.Subject || it.Issuer != o.IssuerDN || !slices.Equal(it.Names, o.Names) || !it.Active {
		t.Fatalf("item = %+v", it)
	}
	checkTime(t, "NotBefore", it.NotBefore, o.NotBefore)
	checkTime(t, "NotAfter", it.NotAfter, o.NotAfter)
	checkTime(t, "FirstSeen", it.FirstSeen, epoch)
	checkTime(t, "LastSeen", it.LastSeen, epoch.Add(time.Minute))
	if len(it.Chain) != 2 || string(it.Chain[0]) != string(o.Chain[0]) || string(it.Chain[1]) != string(o.Chain[1]) {
		t.Fatalf("chain does not round-trip")
	}
	if len(it.Findings) != 0 || len(it.Labels) != 2 || it.Labels["team"] != "web" {
		t.Fatalf("findings = %+v, labels = %v; want the latest sighting's", it.Findings, it.Labels)
	}
	if len(sightings) != 2 || sightings[0].Location != "web.example:8443" || sightings[1].Location != "10.0.0.1:443" {
		t.Fatalf("sightings = %+v, want the latest first", sightings)
	}
	if sg := sightings[1]; sg.Scope != o.Scope || !sg.Current || len(sg.Findings) != 1 || sg.Findings[0] != o.Findings[0] {
		t.Fatalf("first sighting = %+v", sg)
	}
	checkTime(t, "sighting FirstSeen", sightings[0].FirstSeen, epoch.Add(time.Minute))

	// Found by the subject's common name and by each SAN.
	for _, name := range []string{"web", "web.example", "10.0.0.1"} {
		if page := listInventory(t, s, store.InventoryFilter{Name: name}); len(page.Items) != 1 {
			t.Errorf("name %q: %d items, want 1", name, len(page.Items))
		}
	}
	if _, _, err := s.GetScanned(context.Background(), "00"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown fingerprint: %v, want ErrNotFound", err)
	}
}

func testInventoryCurrent(t *testing.T, s store.Store) {
	old := observed("db:5432", "db:5432", "db", epoch.Add(10*24*time.Hour))
	record(t, s, epoch, time.Hour, []string{"db:5432"}, old)
	renewed := observed("db:5432", "db:5432", "db", epoch.Add(90*24*time.Hour))
	record(t, s, epoch.Add(time.Minute), time.Hour, []string{"db:5432"}, renewed)

	if !currentAt(t, s, renewed.Fingerprint)["db:5432"] || currentAt(t, s, old.Fingerprint)["db:5432"] {
		t.Fatal("the renewal is not the one current at the location")
	}
	page := listInventory(t, s, store.InventoryFilter{Active: true})
	if len(page.Items) != 1 || page.Items[0].Fingerprint != renewed.Fingerprint {
		t.Fatalf("active items = %+v, want the renewal alone", page.Items)
	}
	if page := listInventory(t, s, store.InventoryFilter{}); len(page.Items) != 2 {
		t.Fatalf("all items: %d, want 2 (the replaced one is kept)", len(page.Items))
	}
}

func testInventoryAlternating(t *testing.T, s store.Store) {
	oldCert := observed("cdn.example:443", "cdn.example:443", "cdn", epoch.Add(5*24*time.Hour))
	newCert := observed("cdn.example:443", "cdn.example:443", "cdn", epoch.Add(90*24*time.Hour))
	record(t, s, epoch, time.Hour, []string{"cdn.example:443"}, oldCert)
	// The rollout: scans see new, old, new, old.
	for i, o := range []store.Observation{newCert, oldCert, newCert, oldCert} {
		record(t, s, epoch.Add(time.Duration(i+1)*5*time.Minute), time.Hour, []string{"cdn.example:443"}, o)
		if !currentAt(t, s, newCert.Fingerprint)["cdn.example:443"] || currentAt(t, s, oldCert.Fingerprint)["cdn.example:443"] {
			t.Fatalf("scan %d: the new certificate is not current throughout the rollout", i)
		}
	}
	// The rollout is undone: only the old one is seen, for longer than the hold.
	record(t, s, epoch.Add(2*time.Hour), time.Hour, []string{"cdn.example:443"}, oldCert)
	if currentAt(t, s, newCert.Fingerprint)["cdn.example:443"] || !currentAt(t, s, oldCert.Fingerprint)["cdn.example:443"] {
		t.Fatal("after the hold, the certificate presented is not the current one")
	}
}

func testInventoryGone(t *testing.T, s store.Store) {
	a := observed("/etc/ssl/private", "/etc/ssl/private/a.pem", "a", epoch.Add(24*time.Hour))
	b := observed("/etc/ssl/private", "/etc/ssl/private/b.pem", "b", epoch.Add(48*time.Hour))
	other := observed("/srv/tls", "/srv/tls/c.pem", "c", epoch.Add(72*time.Hour))
	record(t, s, epoch, time.Hour, []string{"/etc/ssl/private", "/srv/tls"}, a, b, other)
	// b.pem is deleted; the directory's next scans see only a.pem.
	record(t, s, epoch.Add(30*time.Minute), time.Hour, []string{"/etc/ssl/private"}, a)
	if it, _ := getScanned(t, s, b.Fingerprint); !it.Active {
		t.Fatal("gone for less than the hold, yet inactive")
	}
	record(t, s, epoch.Add(2*time.Hour), time.Hour, []string{"/etc/ssl/private"}, a)
	if it, _ := getScanned(t, s, b.Fingerprint); it.Active {
		t.Fatal("gone for longer than the hold, yet active")
	}
	if it, _ := getScanned(t, s, a.Fingerprint); !it.Active {
		t.Fatal("still present, yet inactive")
	}
	// A scope the run did not cover is left alone.
	if it, _ := getScanned(t, s, other.Fingerprint); !it.Active {
		t.Fatal("a scope not scanned lost its certificate")
	}
	// An empty run of the scope (every file gone) empties it too.
	record(t, s, epoch.Add(4*time.Hour), time.Hour, []string{"/etc/ssl/private"})
	if it, _ := getScanned(t, s, a.Fingerprint); it.Active {
		t.Fatal("scope now empty, yet its certificate is active")
	}
}

func testInventoryMerge(t *testing.T, s store.Store) {
	issuedSoon := newCert("soon.example", "soon.example")
	issuedSoon.NotAfter = epoch.Add(2 * time.Hour)
	issuedLate := newCert("late.example", "late.example")
	issuedLate.NotAfter = epoch.Add(200 * time.Hour)
	commit(t, s, issuance("", issuedSoon), issuance("", issuedLate))
	mid := observed("a:443", "a:443", "mid", epoch.Add(100*time.Hour))
	first := observed("b:443", "b:443", "first", epoch.Add(time.Hour))
	// A scanned certificate meshpki issued is the issued item in a merged
	// listing, and a scanned item when scanned ones are asked for.
	ours := observed("c:443", "c:443", "soon.example", issuedSoon.NotAfter)
	ours.IssuedSerial = issuedSoon.Serial
	record(t, s, epoch, time.Hour, []string{"a:443", "b:443", "c:443"}, mid, first, ours)

	page := listInventory(t, s, store.InventoryFilter{})
	var got []string
	for _, it := range page.Items {
		got = append(got, string(it.Source)+":"+commonNameOf(it))
	}
	want := []string{"scanned:first", "issued:soon.example", "scanned:mid", "issued:late.example"}
	if !slices.Equal(got, want) {
		t.Fatalf("merged = %v, want %v", got, want)
	}
	soon := page.Items[1]
	if soon.Serial != issuedSoon.Serial || soon.Provisioner != issuedSoon.Provisioner || soon.Status != store.StatusValid ||
		!soon.Active || soon.Replaced || len(soon.Chain) != 1 || string(soon.Chain[0]) != string(issuedSoon.DER) {
		t.Fatalf("issued item = %+v", soon)
	}
	scanned := listInventory(t, s, store.InventoryFilter{Source: store.SourceScanned})
	if len(scanned.Items) != 3 || scanned.Items[1].IssuedSerial != issuedSoon.Serial {
		t.Fatalf("scanned = %+v", scanned.Items)
	}
	if issued := listInventory(t, s, store.InventoryFilter{Source: store.SourceIssued}); len(issued.Items) != 2 {
		t.Fatalf("issued = %d items, want 2", len(issued.Items))
	}
	if _, err := s.ListInventory(context.Background(), store.InventoryFilter{Source: "elsewhere"}); err == nil {
		t.Fatal("unknown source accepted")
	}
}

func commonNameOf(it store.InventoryItem) string {
	if it.Source == store.SourceIssued {
		return it.Subject
	}
	name := it.Subject[len("CN="):]
	return name[:len(name)-len(",O=Example")]
}

func testInventoryFilters(t *testing.T, s store.Store) {
	parent := newCert("svc.example", "svc.example")
	parent.NotAfter = epoch.Add(3 * 24 * time.Hour)
	renewal := newCert("svc.example", "svc.example")
	renewal.NotAfter = epoch.Add(30 * 24 * time.Hour)
	renewal.RenewedFrom = parent.Serial
	commit(t, s, issuance("", parent))
	commit(t, s, issuance("", renewal))
	soon := observed("x:443", "x:443", "x", epoch.Add(24*time.Hour), "svc.example")
	record(t, s, epoch, time.Hour, []string{"x:443"}, soon)

	expiring := listInventory(t, s, store.InventoryFilter{ExpiringBefore: epoch.Add(7 * 24 * time.Hour)})
	if len(expiring.Items) != 2 || expiring.Items[0].Fingerprint != soon.Fingerprint || expiring.Items[1].Serial != parent.Serial {
		t.Fatalf("expiring within 7d = %+v", expiring.Items)
	}
	if !expiring.Items[1].Replaced || expiring.Items[1].Active {
		t.Fatalf("a renewed certificate: replaced=%v active=%v", expiring.Items[1].Replaced, expiring.Items[1].Active)
	}
	// SVIDs have no subject: re-minted for the same SPIFFE ID, the older
	// one is replaced; another provisioner's certificate for it is not a
	// replacement.
	svid1 := newCert("", "spiffe://td/ns/app")
	svid1.NotAfter = epoch.Add(time.Hour)
	svid2 := newCert("", "spiffe://td/ns/app")
	svid2.NotAfter = epoch.Add(2 * time.Hour)
	other := newCert("", "spiffe://td/ns/other")
	other.NotAfter = epoch.Add(time.Hour)
	commit(t, s, issuance("", svid1))
	commit(t, s, issuance("", other))
	commit(t, s, issuance("", svid2))
	svids := listInventory(t, s, store.InventoryFilter{Source: store.SourceIssued, Name: "spiffe://td/ns/app"})
	if len(svids.Items) != 2 || !svids.Items[0].Replaced || svids.Items[0].Active || svids.Items[1].Replaced || !svids.Items[1].Active {
		t.Fatalf("re-minted SVIDs = %+v", svids.Items)
	}
	if o := listInventory(t, s, store.InventoryFilter{Source: store.SourceIssued, Name: "spiffe://td/ns/other"}); len(o.Items) != 1 || o.Items[0].Replaced {
		t.Fatalf("another SVID = %+v", o.Items)
	}
	clean := observed("y:443", "y:443", "y", epoch.Add(24*time.Hour))
	clean.Findings = nil
	record(t, s, epoch, time.Hour, []string{"y:443"}, clean)
	withFindings := listInventory(t, s, store.InventoryFilter{Source: store.SourceScanned, WithFindings: true})
	if len(withFindings.Items) != 1 || withFindings.Items[0].Fingerprint != soon.Fingerprint {
		t.Fatalf("with findings = %+v", withFindings.Items)
	}
	active := listInventory(t, s, store.InventoryFilter{Name: "svc.example", Active: true})
	if len(active.Items) != 2 || active.Items[0].Fingerprint != soon.Fingerprint || active.Items[1].Serial != renewal.Serial {
		t.Fatalf("active by name = %+v", active.Items)
	}
	// Issuer, provisioner, serial and status.
	for _, c := range []struct {
		f    store.InventoryFilter
		want int
	}{
		{store.InventoryFilter{Source: store.SourceIssued, Issuer: "default"}, 5},
		{store.InventoryFilter{Issuer: "nope"}, 0},
		{store.InventoryFilter{Issuer: "CN=Example CA"}, 2},
		{store.InventoryFilter{Provisioner: "good-provisioner"}, 5},
		{store.InventoryFilter{Provisioner: "other"}, 0},
		{store.InventoryFilter{Serial: renewal.Serial}, 1},
		{store.InventoryFilter{Serial: soon.Serial, Source: store.SourceScanned}, 1},
		{store.InventoryFilter{Status: store.StatusExpired, Now: epoch.Add(90 * time.Minute)}, 2},
		{store.InventoryFilter{Status: store.StatusValid, Now: epoch.Add(90 * time.Minute)}, 5},
		{store.InventoryFilter{Status: store.StatusRevoked}, 0},
		// Two thirds of svid2's life (epoch-1h to epoch+2h) passed at
		// epoch+1h, and of the scanned ones' (90 days to epoch+1d) long
		// ago; parent's (3d+1h) is far off.
		{store.InventoryFilter{RenewalOverdue: true, Now: epoch.Add(90 * time.Minute)}, 3},
		{store.InventoryFilter{RenewalOverdue: true, Source: store.SourceIssued, Now: epoch.Add(90 * time.Minute)}, 1},
		{store.InventoryFilter{IssuedSince: epoch.Add(-2 * time.Minute)}, 5},
		{store.InventoryFilter{IssuedSince: epoch}, 0},
	} {
		c.f.Limit = 1000
		if got := listInventory(t, s, c.f); len(got.Items) != c.want {
			t.Errorf("%+v: %d items, want %d", c.f, len(got.Items), c.want)
		}
	}
	// InventoryExpiries: by day from epoch+1h, parent (3d) and the scanned
	// ones (24h) fall in buckets 2 and 0; svid1 and other expired at
	// epoch+1h; svid2 (epoch+2h) is in bucket 0; renewal (30d) is past the
	// 10 buckets.
	expired, days, err := s.InventoryExpiries(context.Background(), store.InventoryFilter{}, epoch.Add(time.Hour+time.Minute), 24*time.Hour, 10)
	if err != nil || expired != 2 || days[0] != 3 || days[1] != 0 || days[2] != 1 || len(days) != 10 {
		t.Errorf("InventoryExpiries = %d %v %v", expired, days, err)
	}
	// CountInventory counts what a listing of every page would hold.
	for _, f := range []store.InventoryFilter{
		{}, {Active: true}, {ExpiringBefore: epoch.Add(7 * 24 * time.Hour)}, {Active: true, ExpiringBefore: epoch.Add(7 * 24 * time.Hour)},
		{Source: store.SourceIssued, Name: "spiffe://td/ns/app"}, {Source: store.SourceScanned, WithFindings: true}, {Name: "svc.example", Active: true, Limit: 1},
	} {
		all := f
		all.Limit = 1000
		want := len(listInventory(t, s, all).Items)
		got, err := s.CountInventory(context.Background(), f)
		if err != nil || got != want {
			t.Errorf("CountInventory(%+v) = %d, %v; the listing holds %d", f, got, err, want)
		}
	}
}

func testInventoryPages(t *testing.T, s store.Store) {
	want := map[string]bool{}
	var obs []store.Observation
	for i := range 7 {
		// Ties on notAfter across sources and within one.
		at := epoch.Add(time.Duration(i/3) * time.Hour)
		c := newCert("issued", "issued.example")
		c.NotAfter = at
		commit(t, s, issuance("", c))
		want["i"+string(c.Serial)] = true
		o := observed("scope", "loc"+string(rune('a'+i)), "scanned", at)
		obs = append(obs, o)
		want["s"+o.Fingerprint] = true
	}
	record(t, s, epoch, time.Hour, []string{"scope"}, obs...)
	var forward []string
	for _, latestFirst := range []bool{false, true} {
		seen := map[string]bool{}
		var order []string
		var last time.Time
		f := store.InventoryFilter{Limit: 3, LatestFirst: latestFirst}
		for {
			page := listInventory(t, s, f)
			for _, it := range page.Items {
				key := "s" + it.Fingerprint
				if it.Source == store.SourceIssued {
					key = "i" + string(it.Serial)
				}
				if seen[key] {
					t.Fatalf("latest first %v: %s listed twice", latestFirst, key)
				}
				if !last.IsZero() && (it.NotAfter.Before(last) != latestFirst && !it.NotAfter.Equal(last)) {
					t.Fatalf("latest first %v: out of expiry order", latestFirst)
				}
				seen[key], last = true, it.NotAfter
				order = append(order, key)
			}
			if page.Next == "" {
				break
			}
			f.After = page.Next
		}
		if len(seen) != len(want) {
			t.Fatalf("latest first %v: listed %d items, want %d", latestFirst, len(seen), len(want))
		}
		if !latestFirst {
			forward = order
			continue
		}
		slices.Reverse(order)
		if !slices.Equal(order, forward) {
			t.Errorf("latest first is not the reverse order:\n%v\n%v", order, forward)
		}
	}
}

func testInventoryBadCursor(t *testing.T, s store.Store) {
	for _, c := range []string{"x", "1.issued", "1.elsewhere.2", "a.issued.1"} {
		if _, err := s.ListInventory(context.Background(), store.InventoryFilter{After: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
}

func testScheduleLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	sc := store.ScanSchedule{Name: "edge", Targets: []string{"a:443", "10.0.0.0/30:443"}, Every: time.Hour,
		Options: []byte(`{"timeout":"5s"}`), NextRun: epoch, CreatedAt: epoch}
	before := head(t, s)
	if err := s.CreateSchedule(ctx, sc, newEvent("scan.schedule.created", sc.Name)); err != nil {
		t.Fatal(err)
	}
	if head(t, s) != before+1 {
		t.Fatal("create appended no audit event")
	}
	if err := s.CreateSchedule(ctx, sc, newEvent("scan.schedule.created", sc.Name)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	list, err := s.ListSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "edge" || !slices.Equal(list[0].Targets, sc.Targets) || list[0].Every != time.Hour ||
		string(list[0].Options) != string(sc.Options) || !list[0].LastRun.IsZero() {
		t.Fatalf("list = %+v", list)
	}
	checkTime(t, "NextRun", list[0].NextRun, epoch)
	if _, err := s.ClaimDueSchedule(ctx, epoch.Add(-time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim before due: %v, want ErrNotFound", err)
	}
	got, err := s.ClaimDueSchedule(ctx, epoch.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	checkTime(t, "claimed NextRun", got.NextRun, epoch.Add(time.Hour+time.Second))
	if err := s.DueNow(ctx, "edge", epoch.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if again, err := s.ClaimDueSchedule(ctx, epoch.Add(2*time.Second)); err != nil || again.Name != "edge" {
		t.Fatalf("claim after DueNow: %+v %v", again, err)
	}
	if err := s.DueNow(ctx, "nope", epoch); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DueNow of an unknown schedule: %v", err)
	}
	if err := s.FinishSchedule(ctx, "edge", epoch.Add(time.Second), "a:443: connection refused"); err != nil {
		t.Fatal(err)
	}
	list, _ = s.ListSchedules(ctx)
	if list[0].LastError != "a:443: connection refused" {
		t.Fatalf("LastError = %q", list[0].LastError)
	}
	checkTime(t, "LastRun", list[0].LastRun, epoch.Add(time.Second))
	if err := s.DeleteSchedule(ctx, "edge", newEvent("scan.schedule.removed", "edge")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSchedule(ctx, "edge", newEvent("scan.schedule.removed", "edge")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func testScheduleClaimedOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		if err := s.CreateSchedule(ctx, store.ScanSchedule{Name: name, Targets: []string{name + ":443"}, Every: time.Hour, NextRun: epoch},
			newEvent("scan.schedule.created", name)); err != nil {
			t.Fatal(err)
		}
	}
	results := make(chan string, 10)
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			sc, err := s.ClaimDueSchedule(ctx, epoch)
			if errors.Is(err, store.ErrNotFound) {
				results <- ""
				return
			}
			if err != nil {
				errs <- err
				return
			}
			results <- sc.Name
		}()
	}
	var claimed []string
	for range 10 {
		select {
		case err := <-errs:
			t.Fatal(err)
		case name := <-results:
			if name != "" {
				claimed = append(claimed, name)
			}
		}
	}
	slices.Sort(claimed)
	if !slices.Equal(claimed, []string{"a", "b", "c"}) {
		t.Fatalf("claimed %v, want each schedule once", claimed)
	}
}

// A schedule claimed and never finished (its leader died) is due at once
// after a release; a finished one keeps its next run.
func testSchedulesReleased(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"done", "unfinished"} {
		if err := s.CreateSchedule(ctx, store.ScanSchedule{Name: name, Targets: []string{name + ":443"}, Every: time.Hour, NextRun: epoch},
			newEvent("scan.schedule.created", name)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := s.ClaimDueSchedule(ctx, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FinishSchedule(ctx, "done", epoch, ""); err != nil {
		t.Fatal(err)
	}
	at := epoch.Add(time.Minute)
	if n, err := s.ReleaseSchedules(ctx, at); err != nil || n != 1 {
		t.Fatalf("released %d, %v; want the one unfinished", n, err)
	}
	sc, err := s.ClaimDueSchedule(ctx, at)
	if err != nil || sc.Name != "unfinished" {
		t.Fatalf("after the release claimed %q, %v", sc.Name, err)
	}
	if _, err := s.ClaimDueSchedule(ctx, at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the release moved a finished schedule: %v", err)
	}
}

func testRevokeMatching(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newCert("a.example", "a.example", "spiffe://td/ns/a")
	b := newCert("b.example", "b.example")
	b.Issuer = "edge"
	a2 := newCert("other", "spiffe://td/ns/a")
	expired := newCert("a.example", "a.example")
	expired.NotAfter = epoch.Add(-time.Minute)
	commit(t, s, issuance("", a), issuance("", b), issuance("", a2), issuance("", expired))
	before := head(t, s)
	event := func(sn store.Serial) audit.Event { return newEvent("certificate.revoked", sn) }
	got, err := s.RevokeMatching(ctx, store.MatchRevocation{Name: "spiffe://td/ns/a", Reason: 1, At: epoch, Event: event})
	want := []store.Serial{a.Serial, a2.Serial}
	slices.Sort(want)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("by name: %v %v, want %v", got, err, want)
	}
	if head(t, s) != before+2 {
		t.Fatal("not one audit event per revoked certificate")
	}
	if c := mustGet(t, s, a.Serial); c.Status != store.StatusRevoked || c.RevocationReason != 1 {
		t.Fatalf("a: %+v", c)
	}
	if c := mustGet(t, s, expired.Serial); c.Status != store.StatusValid {
		t.Fatal("an expired certificate was revoked")
	}
	if again, err := s.RevokeMatching(ctx, store.MatchRevocation{Name: "spiffe://td/ns/a", Reason: 1, At: epoch, Event: event}); err != nil || len(again) != 0 {
		t.Fatalf("second time: %v %v", again, err)
	}
	got, err = s.RevokeMatching(ctx, store.MatchRevocation{Issuer: "edge", Reason: 4, At: epoch, Event: event})
	if err != nil || !slices.Equal(got, []store.Serial{b.Serial}) {
		t.Fatalf("by issuer: %v %v", got, err)
	}
	if _, err := s.RevokeMatching(ctx, store.MatchRevocation{Reason: 1, Event: event}); err == nil {
		t.Fatal("no name and no issuer accepted")
	}
}

package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// spiffeTests check store.Entries and store.Nodes; Run runs them with the
// rest.
var spiffeTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"EntryRoundTripsEveryField", testEntryRoundTrip},
	{"EntryGetUnknownIsNotFound", testEntryGetNotFound},
	{"EntryDuplicateIDIsConflict", testEntryDuplicateID},
	{"EntryDuplicateSPIFFEIDParentSelectorsIsConflict", testEntryDuplicateIdentity},
	{"EntryUpdateReplacesAllButCreatedAt", testEntryUpdate},
	{"EntryUpdateErrorsChangeNothing", testEntryUpdateErrors},
	{"EntryDelete", testEntryDelete},
	{"EntryRevisionsStrictlyIncrease", testEntryRevisions},
	{"EntryListFiltersAndPages", testEntryList},
	{"EntryListPageSizeDefaultAndCap", testEntryListPageSize},
	{"EntryChangesPage", testEntryChangesPages},
	{"EntryChangesReportDeletionsWithIDAndParent", testEntryChangesDeletions},
	{"EntryChangesReportEachEntryOnceAtItsLatest", testEntryChangesLatest},
	{"EntryChangesOfEntryDeletedAndCreatedAgain", testEntryChangesRecreated},
	{"EntryConcurrentCreatesTakeDistinctRevisions", testEntryConcurrentCreates},
	{"NodePutGetList", testNodePutGetList},
	{"NodeEvictIsFinal", testNodeEvict},
	{"NodeEvictUnknownIsNotFound", testNodeEvictNotFound},
	{"NodeRecordedWithItsCertificate", testNodeWithCertificate},
}

// Audit event types of the SPIFFE fixtures.
const (
	typeEntryCreated = "entry.created"
	typeEntryUpdated = "entry.updated"
	typeEntryDeleted = "entry.deleted"
	typeNodeAttested = "node.attested"
	typeNodeEvicted  = "node.evicted"
)

// newEntry returns an entry for a workload of spiffe://example.org/<name>
// on the node spiffe://example.org/agent/node-1.
func newEntry(name string) store.Entry {
	return store.Entry{
		ID:        newID("entry-"),
		SPIFFEID:  "spiffe://example.org/" + name,
		Parent:    "spiffe://example.org/agent/node-1",
		Selectors: []string{"unix:uid:1000", "unix:gid:1000"},
		X509TTL:   time.Hour,
		JWTTTL:    5 * time.Minute,
		DNSNames:  []string{name + ".example.org", "www." + name + ".example.org"},
		Hint:      "external",
		CreatedAt: epoch,
		UpdatedAt: epoch.Add(time.Second),
	}
}

func mustCreateEntry(t testing.TB, s store.Store, e store.Entry) int64 {
	t.Helper()
	rev, err := s.CreateEntry(context.Background(), e, newEvent(typeEntryCreated, e.ID))
	if err != nil {
		t.Fatalf("CreateEntry(%s): %v", e.ID, err)
	}
	return rev
}

func mustUpdateEntry(t testing.TB, s store.Store, e store.Entry) int64 {
	t.Helper()
	rev, err := s.UpdateEntry(context.Background(), e, newEvent(typeEntryUpdated, e.ID))
	if err != nil {
		t.Fatalf("UpdateEntry(%s): %v", e.ID, err)
	}
	return rev
}

func mustDeleteEntry(t testing.TB, s store.Store, id string) int64 {
	t.Helper()
	rev, err := s.DeleteEntry(context.Background(), id, newEvent(typeEntryDeleted, id))
	if err != nil {
		t.Fatalf("DeleteEntry(%s): %v", id, err)
	}
	return rev
}

func mustGetEntry(t testing.TB, s store.Store, id string) store.Entry {
	t.Helper()
	e, err := s.GetEntry(context.Background(), id)
	if err != nil {
		t.Fatalf("GetEntry(%s): %v", id, err)
	}
	return e
}

func entryRevision(t testing.TB, s store.Store) int64 {
	t.Helper()
	rev, err := s.EntryRevision(context.Background())
	if err != nil {
		t.Fatalf("EntryRevision: %v", err)
	}
	return rev
}

func mustEntryChanges(t testing.TB, s store.Store, since int64, limit int) ([]store.EntryChange, int64) {
	t.Helper()
	changes, current, err := s.EntryChanges(context.Background(), since, limit)
	if err != nil {
		t.Fatalf("EntryChanges(%d, %d): %v", since, limit, err)
	}
	return changes, current
}

// checkEntry checks that got is want after a round trip at revision rev:
// times at microsecond precision in UTC, selectors as a set.
func checkEntry(t testing.TB, got, want store.Entry, rev int64) {
	t.Helper()
	want.Revision = rev
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	got.Selectors, want.Selectors = sortedSet(got.Selectors), sortedSet(want.Selectors)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entry round trip:\n got %+v\nwant %+v", got, want)
	}
}

func sortedSet(list []string) []string {
	list = slices.Clone(list)
	slices.Sort(list)
	return slices.Compact(list)
}

// changeSummary is a change as "revision:id" or "revision:-id:parent" for
// a deletion.
func changeSummary(changes []store.EntryChange) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		if c.Deleted {
			out[i] = fmt.Sprintf("%d:-%s:%s", c.Revision, c.Entry.ID, c.Entry.Parent)
		} else {
			out[i] = fmt.Sprintf("%d:%s", c.Revision, c.Entry.ID)
		}
	}
	return out
}

func testEntryRoundTrip(t *testing.T, s store.Store) {
	e := newEntry("web")
	rev := mustCreateEntry(t, s, e)
	if rev <= 0 {
		t.Errorf("CreateEntry returned revision %d, want above 0", rev)
	}
	checkEntry(t, mustGetEntry(t, s, e.ID), e, rev)

	bare := store.Entry{ID: newID("entry-"), SPIFFEID: "spiffe://example.org/bare", Parent: "x509pop:subject:cn:web-1",
		Selectors: []string{"unix:uid:0"}, CreatedAt: epoch, UpdatedAt: epoch}
	bareRev := mustCreateEntry(t, s, bare)
	checkEntry(t, mustGetEntry(t, s, bare.ID), bare, bareRev)
	if got := entryRevision(t, s); got != bareRev {
		t.Errorf("EntryRevision = %d, want %d", got, bareRev)
	}
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, []string{typeEntryCreated + ":" + e.ID, typeEntryCreated + ":" + bare.ID}) {
		t.Errorf("audit log %v, want the two creates", got)
	}
}

func testEntryGetNotFound(t *testing.T, s store.Store) {
	if _, err := s.GetEntry(context.Background(), "entry-absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEntry of an unknown id: %v, want ErrNotFound", err)
	}
	if got := entryRevision(t, s); got != 0 {
		t.Errorf("EntryRevision of an empty store = %d, want 0", got)
	}
}

func testEntryDuplicateID(t *testing.T, s store.Store) {
	e := newEntry("web")
	rev := mustCreateEntry(t, s, e)
	other := newEntry("api")
	other.ID = e.ID
	if _, err := s.CreateEntry(context.Background(), other, newEvent(typeEntryCreated, other.ID)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateEntry of a taken id: %v, want ErrConflict", err)
	}
	checkEntry(t, mustGetEntry(t, s, e.ID), e, rev)
	wantUnchanged(t, s, rev, 1)
}

// wantUnchanged checks that a refused write left the revision at rev and
// the audit log at records.
func wantUnchanged(t testing.TB, s store.Store, rev, records int64) {
	t.Helper()
	if got := entryRevision(t, s); got != rev {
		t.Errorf("EntryRevision = %d after a refused write, want %d", got, rev)
	}
	if got := head(t, s); got != records {
		t.Errorf("audit head %d after a refused write, want %d", got, records)
	}
}

func testEntryDuplicateIdentity(t *testing.T, s store.Store) {
	ctx := context.Background()
	e := newEntry("web")
	rev := mustCreateEntry(t, s, e)

	reordered := newEntry("web")
	reordered.Selectors = []string{e.Selectors[1], e.Selectors[0]}
	reordered.DNSNames, reordered.Hint, reordered.X509TTL = nil, "other", 2*time.Hour
	if _, err := s.CreateEntry(ctx, reordered, newEvent(typeEntryCreated, reordered.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateEntry with the same SPIFFE ID, parent and selectors in another order: %v, want ErrConflict", err)
	}
	wantUnchanged(t, s, rev, 1)
	if _, err := s.GetEntry(ctx, reordered.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused entry was written: GetEntry = %v", err)
	}

	// Any one of the three differing is another entry.
	moreSelectors := newEntry("web")
	moreSelectors.Selectors = append(moreSelectors.Selectors, "unix:path:/usr/bin/web")
	otherParent := newEntry("web")
	otherParent.Parent = "x509pop:subject:cn:web-1"
	otherID := newEntry("web2")
	for _, ok := range []store.Entry{moreSelectors, otherParent, otherID} {
		mustCreateEntry(t, s, ok)
	}
}

func testEntryUpdate(t *testing.T, s store.Store) {
	e := newEntry("web")
	created := mustCreateEntry(t, s, e)

	changed := store.Entry{
		ID:        e.ID,
		SPIFFEID:  "spiffe://example.org/web-v2",
		Parent:    "x509pop:subject:cn:web-2",
		Selectors: []string{"unix:uid:2000"},
		X509TTL:   2 * time.Hour,
		JWTTTL:    10 * time.Minute,
		DNSNames:  []string{"v2.example.org"},
		Hint:      "internal",
		CreatedAt: epoch.Add(time.Hour), // ignored
		UpdatedAt: epoch.Add(time.Minute),
	}
	rev := mustUpdateEntry(t, s, changed)
	if rev <= created {
		t.Errorf("UpdateEntry returned revision %d, want above the create's %d", rev, created)
	}
	want := changed
	want.CreatedAt = e.CreatedAt
	checkEntry(t, mustGetEntry(t, s, e.ID), want, rev)

	// An update that keeps the entry's own SPIFFE ID, parent and selectors
	// does not conflict with itself.
	want.Hint = "again"
	want.Selectors = []string{"unix:uid:2000", "unix:uid:2000"}
	again := mustUpdateEntry(t, s, want)
	checkEntry(t, mustGetEntry(t, s, e.ID), want, again)
}

func testEntryUpdateErrors(t *testing.T, s store.Store) {
	ctx := context.Background()
	web, api := newEntry("web"), newEntry("api")
	mustCreateEntry(t, s, web)
	rev := mustCreateEntry(t, s, api)

	absent := newEntry("absent")
	if _, err := s.UpdateEntry(ctx, absent, newEvent(typeEntryUpdated, absent.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateEntry of an unknown id: %v, want ErrNotFound", err)
	}
	wantUnchanged(t, s, rev, 2)

	clash := api
	clash.SPIFFEID = web.SPIFFEID
	clash.Selectors = []string{web.Selectors[1], web.Selectors[0]}
	if _, err := s.UpdateEntry(ctx, clash, newEvent(typeEntryUpdated, clash.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateEntry to another entry's SPIFFE ID, parent and selectors: %v, want ErrConflict", err)
	}
	wantUnchanged(t, s, rev, 2)
	checkEntry(t, mustGetEntry(t, s, api.ID), api, rev)
}

func testEntryDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	e := newEntry("web")
	created := mustCreateEntry(t, s, e)
	rev := mustDeleteEntry(t, s, e.ID)
	if rev <= created {
		t.Errorf("DeleteEntry returned revision %d, want above the create's %d", rev, created)
	}
	if _, err := s.GetEntry(ctx, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEntry after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteEntry(ctx, e.ID, newEvent(typeEntryDeleted, e.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteEntry: %v, want ErrNotFound", err)
	}
	wantUnchanged(t, s, rev, 2)
	// The deleted entry's SPIFFE ID, parent and selectors are free again.
	mustCreateEntry(t, s, newEntry("web"))
}

func testEntryRevisions(t *testing.T, s store.Store) {
	var revs []int64
	a, b := newEntry("a"), newEntry("b")
	revs = append(revs, mustCreateEntry(t, s, a), mustCreateEntry(t, s, b))
	a.Hint = "changed"
	revs = append(revs, mustUpdateEntry(t, s, a), mustDeleteEntry(t, s, b.ID), mustUpdateEntry(t, s, a))
	revs = append(revs, mustCreateEntry(t, s, b), mustDeleteEntry(t, s, a.ID))
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Errorf("revisions %v do not strictly increase", revs)
			break
		}
	}
	if got, want := entryRevision(t, s), revs[len(revs)-1]; got != want {
		t.Errorf("EntryRevision = %d, want the last change's %d", got, want)
	}
	if got := mustGetEntry(t, s, b.ID).Revision; got != revs[5] {
		t.Errorf("entry Revision = %d, want its last change's %d", got, revs[5])
	}
}

func testEntryList(t *testing.T, s store.Store) {
	ctx := context.Background()
	type fixture struct{ name, parent string }
	var all []store.Entry
	for i, f := range []fixture{
		{"web", "spiffe://example.org/agent/node-1"},
		{"web", "spiffe://example.org/agent/node-2"},
		{"api", "spiffe://example.org/agent/node-1"},
		{"api", "x509pop:subject:cn:web-1"},
		{"db", "spiffe://example.org/agent/node-2"},
	} {
		e := newEntry(f.name)
		e.ID = fmt.Sprintf("entry-%02d", 10-i) // listed in the reverse of creation
		e.Parent = f.parent
		e.Revision = mustCreateEntry(t, s, e)
		all = append(all, e)
	}
	slices.Reverse(all)
	ids := func(entries []store.Entry) []string {
		out := make([]string, len(entries))
		for i, e := range entries {
			out[i] = e.ID
		}
		return out
	}
	list := func(f store.EntryFilter) []store.Entry {
		t.Helper()
		got, err := s.ListEntries(ctx, f)
		if err != nil {
			t.Fatalf("ListEntries(%+v): %v", f, err)
		}
		return got
	}
	for _, tc := range []struct {
		name   string
		filter store.EntryFilter
		want   []string
	}{
		{"all", store.EntryFilter{}, ids(all)},
		{"by-spiffe-id", store.EntryFilter{SPIFFEID: "spiffe://example.org/web"}, []string{"entry-09", "entry-10"}},
		{"by-parent", store.EntryFilter{Parent: "spiffe://example.org/agent/node-2"}, []string{"entry-06", "entry-09"}},
		{"by-both", store.EntryFilter{SPIFFEID: "spiffe://example.org/api", Parent: "x509pop:subject:cn:web-1"}, []string{"entry-07"}},
		{"no-match", store.EntryFilter{SPIFFEID: "spiffe://example.org/none"}, nil},
		{"first-page", store.EntryFilter{Limit: 2}, []string{"entry-06", "entry-07"}},
		{"next-page", store.EntryFilter{After: "entry-07", Limit: 2}, []string{"entry-08", "entry-09"}},
		{"last-page", store.EntryFilter{After: "entry-09", Limit: 2}, []string{"entry-10"}},
		{"after-the-end", store.EntryFilter{After: "entry-10"}, nil},
		{"filtered-page", store.EntryFilter{Parent: "spiffe://example.org/agent/node-1", After: "entry-08"}, []string{"entry-10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(list(tc.filter)); !slices.Equal(got, tc.want) {
				t.Errorf("ListEntries(%+v) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	for i, got := range list(store.EntryFilter{}) {
		checkEntry(t, got, all[i], all[i].Revision)
	}
}

func testEntryListPageSize(t *testing.T, s store.Store) {
	createEntries(t, s, 1001, 8)
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {5000, 1000}, {1000, 1000}} {
		got, err := s.ListEntries(context.Background(), store.EntryFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("ListEntries with Limit %d returned %d entries, want %d", tc.limit, len(got), tc.want)
		}
	}
}

// createEntries creates n entries from workers goroutines and returns their
// revisions by id.
func createEntries(t testing.TB, s store.Store, n, workers int) map[string]int64 {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		revs = make(map[string]int64)
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				e := newEntry(fmt.Sprintf("w%d/e%d", w, i))
				rev, err := s.CreateEntry(context.Background(), e, newEvent(typeEntryCreated, e.ID))
				if err != nil {
					t.Errorf("CreateEntry: %v", err)
					return
				}
				mu.Lock()
				revs[e.ID] = rev
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return revs
}

func testEntryChangesPages(t *testing.T, s store.Store) {
	var want []string
	for i := range 7 {
		e := newEntry(fmt.Sprintf("e%d", i))
		want = append(want, fmt.Sprintf("%d:%s", mustCreateEntry(t, s, e), e.ID))
	}
	last := entryRevision(t, s)
	if changes, current := mustEntryChanges(t, s, 0, 0); !slices.Equal(changeSummary(changes), want) || current != last {
		t.Errorf("EntryChanges(0, 0) = %v, %d; want %v, %d", changeSummary(changes), current, want, last)
	}
	var (
		got   []string
		since int64
	)
	for pages := 0; ; pages++ {
		if pages > 7 {
			t.Fatal("EntryChanges does not end")
		}
		changes, current := mustEntryChanges(t, s, since, 3)
		if current != last {
			t.Errorf("EntryChanges(%d, 3) current = %d, want %d", since, current, last)
		}
		if len(changes) > 3 {
			t.Fatalf("EntryChanges(%d, 3) returned %d changes", since, len(changes))
		}
		got = append(got, changeSummary(changes)...)
		if len(changes) < 3 {
			break
		}
		since = changes[len(changes)-1].Revision
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged EntryChanges = %v, want %v", got, want)
	}
	if changes, current := mustEntryChanges(t, s, last, 0); len(changes) != 0 || current != last {
		t.Errorf("EntryChanges(current) = %v, %d; want none, %d", changeSummary(changes), current, last)
	}
	// A created entry's change carries it whole.
	e := newEntry("whole")
	rev := mustCreateEntry(t, s, e)
	changes, _ := mustEntryChanges(t, s, last, 0)
	if len(changes) != 1 || changes[0].Deleted || changes[0].Revision != rev {
		t.Fatalf("EntryChanges(%d) = %+v, want the create at %d", last, changes, rev)
	}
	checkEntry(t, changes[0].Entry, e, rev)
}

func testEntryChangesDeletions(t *testing.T, s store.Store) {
	a, b := newEntry("a"), newEntry("b")
	b.Parent = "x509pop:subject:cn:web-1"
	mustCreateEntry(t, s, a)
	mustCreateEntry(t, s, b)
	since := entryRevision(t, s)
	delB := mustDeleteEntry(t, s, b.ID)
	a.Hint = "changed"
	updA := mustUpdateEntry(t, s, a)

	changes, current := mustEntryChanges(t, s, since, 0)
	want := []string{fmt.Sprintf("%d:-%s:%s", delB, b.ID, b.Parent), fmt.Sprintf("%d:%s", updA, a.ID)}
	if got := changeSummary(changes); !slices.Equal(got, want) || current != updA {
		t.Fatalf("EntryChanges(%d) = %v, %d; want %v, %d", since, got, current, want, updA)
	}
	if got := changes[0].Entry; !reflect.DeepEqual(got, store.Entry{ID: b.ID, Parent: b.Parent}) {
		t.Errorf("deletion reported as %+v, want only ID and Parent", got)
	}
	checkEntry(t, changes[1].Entry, a, updA)
}

// An entry changed several times after since is reported once, as it is
// now, at the revision of its last change.
func testEntryChangesLatest(t *testing.T, s store.Store) {
	a, b, c := newEntry("a"), newEntry("b"), newEntry("c")
	mustCreateEntry(t, s, a)
	mustCreateEntry(t, s, b)
	since := entryRevision(t, s)
	a.Hint = "first"
	mustUpdateEntry(t, s, a)
	mustCreateEntry(t, s, c)
	b.Hint = "once"
	updB := mustUpdateEntry(t, s, b)
	a.Hint = "second"
	a.DNSNames = []string{"second.example.org"}
	updA := mustUpdateEntry(t, s, a)
	c.Hint = "c changed"
	mustUpdateEntry(t, s, c)
	delC := mustDeleteEntry(t, s, c.ID)

	changes, _ := mustEntryChanges(t, s, since, 0)
	want := []string{fmt.Sprintf("%d:%s", updB, b.ID), fmt.Sprintf("%d:%s", updA, a.ID), fmt.Sprintf("%d:-%s:%s", delC, c.ID, c.Parent)}
	if got := changeSummary(changes); !slices.Equal(got, want) {
		t.Fatalf("EntryChanges(%d) = %v, want %v", since, got, want)
	}
	checkEntry(t, changes[1].Entry, a, updA)
	// Paging sees each once too.
	first, _ := mustEntryChanges(t, s, since, 1)
	rest, _ := mustEntryChanges(t, s, first[0].Revision, 5)
	if got := changeSummary(append(first, rest...)); !slices.Equal(got, want) {
		t.Errorf("paged EntryChanges(%d) = %v, want %v", since, got, want)
	}
}

func testEntryChangesRecreated(t *testing.T, s store.Store) {
	e := newEntry("again")
	mustCreateEntry(t, s, e)
	since := entryRevision(t, s)
	mustDeleteEntry(t, s, e.ID)
	e.Hint = "recreated"
	rev := mustCreateEntry(t, s, e)
	changes, _ := mustEntryChanges(t, s, since, 0)
	if got, want := changeSummary(changes), []string{fmt.Sprintf("%d:%s", rev, e.ID)}; !slices.Equal(got, want) {
		t.Fatalf("EntryChanges(%d) = %v, want %v", since, got, want)
	}
	checkEntry(t, changes[0].Entry, e, rev)

	del := mustDeleteEntry(t, s, e.ID)
	changes, _ = mustEntryChanges(t, s, 0, 0)
	if got, want := changeSummary(changes), []string{fmt.Sprintf("%d:-%s:%s", del, e.ID, e.Parent)}; !slices.Equal(got, want) {
		t.Errorf("EntryChanges(0) = %v, want %v", got, want)
	}
}

func testEntryConcurrentCreates(t *testing.T, s store.Store) {
	const (
		n       = 96
		workers = 16
	)
	revs := createEntries(t, s, n, workers)
	if len(revs) != n {
		t.Fatalf("%d entries created, want %d", len(revs), n)
	}
	seen := make(map[int64]string)
	for id, rev := range revs {
		if other, ok := seen[rev]; ok {
			t.Errorf("entries %s and %s both got revision %d", id, other, rev)
		}
		seen[rev] = id
	}
	current := entryRevision(t, s)
	changes, got := mustEntryChanges(t, s, 0, 0)
	if got != current || len(changes) != n {
		t.Fatalf("EntryChanges(0) = %d changes, current %d; want %d, %d", len(changes), got, n, current)
	}
	for i, c := range changes {
		if revs[c.Entry.ID] != c.Revision || (i > 0 && c.Revision <= changes[i-1].Revision) {
			t.Errorf("change %d: %s at %d, created at %d", i, c.Entry.ID, c.Revision, revs[c.Entry.ID])
		}
		if c.Revision > current {
			t.Errorf("change %d at %d, above the current revision %d", i, c.Revision, current)
		}
	}
	var subjects []string
	for _, e := range allAudit(t, s) {
		subjects = append(subjects, e.Subject)
	}
	ids := slices.Sorted(maps.Keys(revs))
	slices.Sort(subjects)
	if !slices.Equal(subjects, ids) {
		t.Errorf("audit log names %d subjects, want the %d entries created", len(subjects), len(ids))
	}
}

// newNode returns a node attested by x509pop.
func newNode(name string) store.Node {
	return store.Node{
		SPIFFEID:    "spiffe://example.org/spire/agent/x509pop/" + name,
		Attestation: "x509pop",
		Selectors:   []string{"x509pop:subject:cn:" + name, "x509pop:ca:fingerprint:00ff"},
		CertSerial:  newSerial(),
		CreatedAt:   epoch,
		UpdatedAt:   epoch,
	}
}

func mustPutNode(t testing.TB, s store.Store, n store.Node) {
	t.Helper()
	if err := s.PutNode(context.Background(), n, newEvent(typeNodeAttested, n.SPIFFEID)); err != nil {
		t.Fatalf("PutNode(%s): %v", n.SPIFFEID, err)
	}
}

func mustGetNode(t testing.TB, s store.Store, id string) store.Node {
	t.Helper()
	n, err := s.GetNode(context.Background(), id)
	if err != nil {
		t.Fatalf("GetNode(%s): %v", id, err)
	}
	return n
}

func checkNode(t testing.TB, got, want store.Node) {
	t.Helper()
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("node round trip:\n got %+v\nwant %+v", got, want)
	}
}

func testNodePutGetList(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetNode(ctx, "spiffe://example.org/absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode of an unknown node: %v, want ErrNotFound", err)
	}
	if got, err := s.ListNodes(ctx); err != nil || len(got) != 0 {
		t.Errorf("ListNodes of an empty store = %v, %v", got, err)
	}
	web2, web1 := newNode("web-2"), newNode("web-1")
	joined := store.Node{SPIFFEID: "spiffe://example.org/spire/agent/join_token/tok", Attestation: "join_token",
		CertSerial: newSerial(), CreatedAt: epoch, UpdatedAt: epoch}
	for _, n := range []store.Node{web2, web1, joined} {
		mustPutNode(t, s, n)
	}
	checkNode(t, mustGetNode(t, s, web1.SPIFFEID), web1)
	checkNode(t, mustGetNode(t, s, joined.SPIFFEID), joined)

	// A put replaces the record: a new SVID, new selectors.
	renewed := web1
	renewed.CertSerial = newSerial()
	renewed.Selectors = []string{"x509pop:subject:cn:web-1"}
	renewed.UpdatedAt = epoch.Add(time.Hour)
	mustPutNode(t, s, renewed)
	checkNode(t, mustGetNode(t, s, web1.SPIFFEID), renewed)

	all, err := s.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range all {
		ids = append(ids, n.SPIFFEID)
	}
	if want := []string{joined.SPIFFEID, web1.SPIFFEID, web2.SPIFFEID}; !slices.Equal(ids, want) {
		t.Errorf("ListNodes = %v, want %v", ids, want)
	}
	if got := head(t, s); got != 4 {
		t.Errorf("audit head %d, want one record per put (4)", got)
	}
}

func testNodeEvict(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := newNode("web-1")
	mustPutNode(t, s, n)
	if err := s.EvictNode(ctx, n.SPIFFEID, newEvent(typeNodeEvicted, n.SPIFFEID)); err != nil {
		t.Fatalf("EvictNode: %v", err)
	}
	evicted := mustGetNode(t, s, n.SPIFFEID)
	if !evicted.Evicted {
		t.Fatal("node not evicted")
	}
	records := head(t, s)

	again := n
	again.CertSerial = newSerial()
	again.UpdatedAt = epoch.Add(time.Hour)
	if err := s.PutNode(ctx, again, newEvent(typeNodeAttested, n.SPIFFEID)); !errors.Is(err, store.ErrStateChanged) {
		t.Fatalf("PutNode of an evicted node: %v, want ErrStateChanged", err)
	}
	checkNode(t, mustGetNode(t, s, n.SPIFFEID), evicted)
	if got := head(t, s); got != records {
		t.Errorf("audit head %d after a refused put, want %d", got, records)
	}
	if err := s.EvictNode(ctx, n.SPIFFEID, newEvent(typeNodeEvicted, n.SPIFFEID)); err != nil {
		t.Errorf("EvictNode of an evicted node: %v", err)
	}
	if !mustGetNode(t, s, n.SPIFFEID).Evicted {
		t.Error("node no longer evicted")
	}
}

func testNodeEvictNotFound(t *testing.T, s store.Store) {
	id := "spiffe://example.org/spire/agent/x509pop/absent"
	if err := s.EvictNode(context.Background(), id, newEvent(typeNodeEvicted, id)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EvictNode of an unknown node: %v, want ErrNotFound", err)
	}
	if _, err := s.GetNode(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode after evicting an unknown node: %v, want ErrNotFound", err)
	}
	if got := head(t, s); got != 0 {
		t.Errorf("audit head %d, want 0", got)
	}
}

// testNodeWithCertificate: a node record rides on the issuance of its node
// SVID — recorded with the certificate's serial in the same transaction,
// replaced (keeping CreatedAt) on renewal, and refused, with the
// certificate, once the node is evicted.
func testNodeWithCertificate(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := newNode("web-2")
	first := issuance("", newCert("node"))
	first.Node = &n
	wantResults(t, commit(t, s, first), nil)
	got := mustGetNode(t, s, n.SPIFFEID)
	if got.CertSerial != first.Certificate.Serial || got.Evicted {
		t.Fatalf("node after its first SVID: %+v, want serial %s", got, first.Certificate.Serial)
	}
	renewed := n
	renewed.CreatedAt, renewed.UpdatedAt = epoch.Add(time.Hour), epoch.Add(time.Hour)
	second := issuance("", newCert("node"))
	second.Node = &renewed
	wantResults(t, commit(t, s, second), nil)
	if got := mustGetNode(t, s, n.SPIFFEID); got.CertSerial != second.Certificate.Serial || !got.CreatedAt.Equal(µs(n.CreatedAt)) {
		t.Fatalf("node after renewal: %+v, want serial %s and the first CreatedAt", got, second.Certificate.Serial)
	}
	if err := s.EvictNode(ctx, n.SPIFFEID, newEvent(typeNodeEvicted, n.SPIFFEID)); err != nil {
		t.Fatal(err)
	}
	records := head(t, s)
	third := issuance("", newCert("node"))
	third.Node = &renewed
	wantResults(t, commit(t, s, third), store.ErrStateChanged)
	if _, err := s.GetCertificate(ctx, third.Certificate.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an evicted node's certificate was recorded: %v", err)
	}
	if got := head(t, s); got != records {
		t.Errorf("audit head %d after a refused issuance, want %d", got, records)
	}
}

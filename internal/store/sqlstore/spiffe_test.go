package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// keepDeletions sets the retention of entry deletions until the test ends.
// Tests that call it must not be parallel.
func keepDeletions(t testing.TB, kept, interval int64) {
	oldKept, oldInterval := entryDeletionsKept, entryPruneInterval
	entryDeletionsKept, entryPruneInterval = kept, interval
	t.Cleanup(func() { entryDeletionsKept, entryPruneInterval = oldKept, oldInterval })
}

func benchEntry(name string) store.Entry {
	return store.Entry{
		ID:        "entry-" + name,
		SPIFFEID:  "spiffe://example.org/" + name,
		Parent:    "spiffe://example.org/agent/node-1",
		Selectors: []string{"unix:uid:1000"},
		X509TTL:   time.Hour,
		JWTTTL:    5 * time.Minute,
	}
}

var entryEvent = audit.Event{Type: "entry.changed", Actor: "test", Outcome: "success"}

func TestEntryDeletionsPrunedSQLite(t *testing.T) {
	testEntryDeletionsPruned(t, mustOpen(t, "", t.TempDir()))
}

func TestEntryDeletionsPrunedPostgres(t *testing.T) {
	testEntryDeletionsPruned(t, mustOpen(t, postgresSchema(t), ""))
}

// Deletions are forgotten once older than the retention; changes since a
// revision before a forgotten deletion are gone, later ones are whole, and
// entries themselves are never forgotten.
func testEntryDeletionsPruned(t *testing.T, s *Store) {
	keepDeletions(t, 5, 2)
	ctx := context.Background()
	create := func(name string) int64 {
		t.Helper()
		rev, err := s.CreateEntry(ctx, benchEntry(name), entryEvent)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	remove := func(name string) int64 {
		t.Helper()
		rev, err := s.DeleteEntry(ctx, "entry-"+name, entryEvent)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	changes := func(since int64) ([]string, error) {
		t.Helper()
		changes, _, err := s.EntryChanges(ctx, since, 0)
		var out []string
		for _, c := range changes {
			if c.Deleted {
				out = append(out, fmt.Sprintf("%d:-%s", c.Revision, c.Entry.ID))
			} else {
				out = append(out, fmt.Sprintf("%d:%s", c.Revision, c.Entry.ID))
			}
		}
		return out, err
	}

	for _, name := range []string{"a", "b", "c"} {
		create(name)
	}
	if rev := remove("a"); rev != 4 {
		t.Fatalf("delete at revision %d, want 4", rev)
	}
	for i := range 6 {
		create(fmt.Sprintf("n%d", i)) // 5 to 10: at 10 the deletion at 4 goes
	}
	for _, since := range []int64{1, 3} {
		if _, err := changes(since); !errors.Is(err, store.ErrRevisionGone) {
			t.Errorf("EntryChanges(%d) after the deletion at 4 was pruned: %v, want ErrRevisionGone", since, err)
		}
	}
	got, err := changes(4)
	want := []string{"5:entry-n0", "6:entry-n1", "7:entry-n2", "8:entry-n3", "9:entry-n4", "10:entry-n5"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("EntryChanges(4) = %v, %v; want %v", got, err, want)
	}
	// A caller with nothing needs no deletion: every entry is there.
	got, err = changes(0)
	want = append([]string{"2:entry-b", "3:entry-c"}, want...)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("EntryChanges(0) = %v, %v; want %v", got, err, want)
	}

	// A deletion within the retention is kept.
	remove("b") // 11
	create("n6")
	create("n7") // 13
	remove("c")  // 14; at 14, a cut at 9 finds no deletion
	if got, err := changes(10); err != nil || !slices.Equal(got, []string{"11:-entry-b", "12:entry-n6", "13:entry-n7", "14:-entry-c"}) {
		t.Errorf("EntryChanges(10) = %v, %v", got, err)
	}
	if got, err := changes(5); err != nil || len(got) != 9 {
		t.Errorf("EntryChanges(5) = %v, %v; want 9 changes", got, err)
	}

	current, err := s.EntryRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := changes(current + 1); !errors.Is(err, store.ErrRevisionGone) {
		t.Errorf("EntryChanges above the current revision: %v, want ErrRevisionGone", err)
	}
}

// TestEntryChangesPlansSQLite checks that EntryChanges reads by index, not by
// scanning the tables.
func TestEntryChangesPlansSQLite(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	plan := queryPlan(t, s, entryChanges, 5, 11)
	for _, want := range []string{"spiffe_entries_revision", "spiffe_entry_deletions_revision"} {
		if !slices.ContainsFunc(plan, func(d string) bool { return strings.Contains(d, want) }) {
			t.Errorf("plan %q does not use %s", plan, want)
		}
	}
}

// BenchmarkEntryChanges reads the changes of a store of 1000 entries: all
// of them (since 0, as an agent starting up) and the last 10 (as an agent
// polling).
func BenchmarkEntryChanges(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"sqlite", func(b *testing.B) *Store { return mustOpen(b, "", b.TempDir()) }},
		{"postgres", func(b *testing.B) *Store { return mustOpen(b, postgresSchema(b), "") }},
	} {
		b.Run(backend.name, func(b *testing.B) {
			s := backend.open(b)
			ctx := context.Background()
			const entries = 1000
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < entries; i += 8 {
						if _, err := s.CreateEntry(ctx, benchEntry(fmt.Sprintf("e%04d", i)), entryEvent); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			current, err := s.EntryRevision(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, tc := range []struct {
				name  string
				since int64
				want  int
			}{
				{"since=0", 0, entries},
				{"since=current-10", current - 10, 10},
			} {
				b.Run(tc.name, func(b *testing.B) {
					for b.Loop() {
						changes, _, err := s.EntryChanges(ctx, tc.since, 0)
						if err != nil {
							b.Fatal(err)
						}
						if len(changes) != tc.want {
							b.Fatalf("%d changes, want %d", len(changes), tc.want)
						}
					}
				})
			}
		})
	}
}

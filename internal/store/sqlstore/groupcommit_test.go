package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// BenchmarkConcurrentConsumeToken consumes distinct token ids from many
// goroutines at once (8 per CPU), each call its own write transaction: the
// load of an ACME server's many small writes. On SQLite it measures how well
// concurrent writes share commits; on PostgreSQL (when
// MESHPKI_TEST_POSTGRES_URL is set) how they queue on the write lock.
func BenchmarkConcurrentConsumeToken(b *testing.B) {
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
			expires := time.Now().Add(time.Hour)
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.ConsumeToken(ctx, fmt.Sprintf("tok-%012d", n.Add(1)), expires); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// holdLead takes the lead of s's SQLite writer, as a batch in progress
// would, so that writes queue; the returned function lets them run.
func holdLead(t *testing.T, s *Store) (release func()) {
	return holdGroup(t, s.sqlite.group)
}

// holdGroup takes the lead of g, as a batch in progress would.
func holdGroup[T any](t *testing.T, g *groupCommit[T]) (release func()) {
	t.Helper()
	g.lead <- struct{}{}
	var once sync.Once
	release = func() { once.Do(func() { <-g.lead }) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until n writes are queued on s's SQLite writer.
func waitQueued(t *testing.T, s *Store, n int) { waitGroupQueued(t, s.sqlite.group, n) }

// waitGroupQueued waits until n writes are queued on g.
func waitGroupQueued[T any](t *testing.T, g *groupCommit[T], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		queued := len(g.queue)
		g.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", queued, n)
		}
		runtime.Gosched()
	}
}

// queueWrite starts fn as a write of its own goroutine, waits until it is
// queued (the queue holding n writes), and returns its outcome's channel.
func queueWrite(t *testing.T, s *Store, ctx context.Context, n int, fn func(w writer) error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		done <- s.writeTx(ctx, "test write", fn)
	}()
	waitQueued(t, s, n)
	return done
}

// insertToken is a write body that records token id.
func insertToken(id string) func(w writer) error {
	return func(w writer) error {
		_, err := w.exec(context.Background(), `INSERT INTO tokens (id, expires_at) VALUES ($1, $2)`, id, 0)
		return err
	}
}

// tokens returns the committed token ids, in order.
func tokens(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.read.Query(`SELECT id FROM tokens ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// Writes queued while another holds the lead run in one transaction: each
// sees those before it, and no other connection sees any before the commit.
func TestSQLiteGroupCommitSharesOneTransaction(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	release := holdLead(t, s)
	const n = 8
	var (
		mu   sync.Mutex
		seen []int64
	)
	var results []<-chan error
	for i := range n {
		id := fmt.Sprintf("tok-%d", i)
		results = append(results, queueWrite(t, s, context.Background(), i+1, func(w writer) error {
			if err := insertToken(id)(w); err != nil {
				return err
			}
			var inTx, committed int64
			if err := w.queryRow(context.Background(), `SELECT count(*) FROM tokens`, nil, &inTx); err != nil {
				return err
			}
			if err := s.read.QueryRow(`SELECT count(*) FROM tokens`).Scan(&committed); err != nil {
				return err
			}
			if committed != 0 {
				return fmt.Errorf("%d tokens committed before the batch", committed)
			}
			mu.Lock()
			seen = append(seen, inTx)
			mu.Unlock()
			return nil
		}))
	}
	release()
	for i, done := range results {
		if err := <-done; err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if !slices.Equal(seen, []int64{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("writes saw %v tokens in turn, want 1 to 8: one transaction, in queue order", seen)
	}
	if got := tokens(t, s); len(got) != n {
		t.Errorf("%d tokens committed, want %d", len(got), n)
	}
}

// A write that fails is rolled back alone; the others of its batch commit.
func TestSQLiteGroupCommitFailedWriteRollsBackAlone(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	release := holdLead(t, s)
	injected := errors.New("injected failure")
	first := queueWrite(t, s, context.Background(), 1, insertToken("tok-a"))
	failed := queueWrite(t, s, context.Background(), 2, func(w writer) error {
		if err := insertToken("tok-b")(w); err != nil {
			return err
		}
		return injected
	})
	duplicate := queueWrite(t, s, context.Background(), 3, insertToken("tok-a")) // a constraint error
	last := queueWrite(t, s, context.Background(), 4, insertToken("tok-c"))
	release()
	if err := <-first; err != nil {
		t.Errorf("first write: %v", err)
	}
	if err := <-failed; !errors.Is(err, injected) {
		t.Errorf("failed write: %v, want the injected failure", err)
	}
	if err := <-duplicate; err == nil {
		t.Error("write of a duplicate key succeeded")
	}
	if err := <-last; err != nil {
		t.Errorf("last write: %v", err)
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-a", "tok-c"}) {
		t.Errorf("committed %v, want tok-a and tok-c", got)
	}
}

// A write whose context ends before its turn does not run; the others do.
func TestSQLiteGroupCommitCanceledWriteDoesNotRun(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	release := holdLead(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	first := queueWrite(t, s, context.Background(), 1, func(w writer) error {
		cancel() // before the next write's turn
		return insertToken("tok-a")(w)
	})
	canceled := queueWrite(t, s, ctx, 2, func(w writer) error {
		ran.Store(true)
		return insertToken("tok-b")(w)
	})
	last := queueWrite(t, s, context.Background(), 3, insertToken("tok-c"))
	release()
	if err := <-first; err != nil {
		t.Errorf("first write: %v", err)
	}
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled write: %v, want context.Canceled", err)
	}
	if err := <-last; err != nil {
		t.Errorf("last write: %v", err)
	}
	if ran.Load() {
		t.Error("the canceled write ran")
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-a", "tok-c"}) {
		t.Errorf("committed %v, want tok-a and tok-c", got)
	}

	// A caller whose context ends while it waits returns at once, and its
	// write never runs.
	release = holdLead(t, s)
	waiting, cancelWaiting := context.WithCancel(context.Background())
	gaveUp := queueWrite(t, s, waiting, 1, insertToken("tok-never"))
	cancelWaiting()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("write given up while queued: %v, want context.Canceled", err)
	}
	release()
	if err := s.ConsumeToken(context.Background(), "tok-d", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-a", "tok-c", "tok-d"}) {
		t.Errorf("committed %v, want tok-a, tok-c and tok-d", got)
	}
}

// A write that panics panics in its caller's goroutine and is rolled back;
// the others of its batch commit.
func TestSQLiteGroupCommitPanicStaysWithItsWrite(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	release := holdLead(t, s)
	first := queueWrite(t, s, context.Background(), 1, insertToken("tok-a"))
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = s.writeTx(context.Background(), "panicking write", func(w writer) error {
			if err := insertToken("tok-b")(w); err != nil {
				return err
			}
			panic("injected panic")
		})
	}()
	waitQueued(t, s, 2)
	last := queueWrite(t, s, context.Background(), 3, insertToken("tok-c"))
	release()
	if p := <-panicked; p != "injected panic" {
		t.Errorf("panicking write's caller recovered %v, want the injected panic", p)
	}
	if err := <-first; err != nil {
		t.Errorf("first write: %v", err)
	}
	if err := <-last; err != nil {
		t.Errorf("last write: %v", err)
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-a", "tok-c"}) {
		t.Errorf("committed %v, want tok-a and tok-c", got)
	}
}

// When the transaction itself is lost mid-batch, every write of the batch
// fails, the connection is replaced, and the store writes on.
func TestSQLiteGroupCommitLostTransactionFailsBatch(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	release := holdLead(t, s)
	first := queueWrite(t, s, context.Background(), 1, insertToken("tok-a"))
	breaking := queueWrite(t, s, context.Background(), 2, func(w writer) error {
		// Ends the batch's transaction, as SQLite does itself after an I/O
		// error, so that rolling back to the savepoint fails.
		if _, err := w.exec(context.Background(), "ROLLBACK"); err != nil {
			return err
		}
		return errors.New("injected failure")
	})
	last := queueWrite(t, s, context.Background(), 3, insertToken("tok-c"))
	release()
	for name, done := range map[string]<-chan error{"first": first, "breaking": breaking, "last": last} {
		if err := <-done; err == nil {
			t.Errorf("%s write succeeded in a lost transaction", name)
		}
	}
	if got := tokens(t, s); len(got) != 0 {
		t.Errorf("committed %v from a lost transaction", got)
	}
	if err := s.ConsumeToken(context.Background(), "tok-after", time.Now()); err != nil {
		t.Fatalf("write after a lost transaction: %v", err)
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-after"}) {
		t.Errorf("committed %v, want tok-after", got)
	}
}

// certIssuance is an issuance of a minimal certificate with serial, under
// token id tokenID.
func certIssuance(tokenID, serial string) store.Issuance {
	now := time.Now()
	return store.Issuance{TokenID: tokenID, TokenExpires: now.Add(time.Hour), Certificate: &store.Certificate{
		Serial: store.Serial(serial), Issuer: "int", Subject: "svc", Names: []string{"svc.example.internal"},
		NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{0x30, 0x00}, Status: store.StatusValid,
	}}
}

// On PostgreSQL, CommitIssuances calls queued together commit in one
// transaction, their items decided in queue order across calls: a token id
// or serial taken by an earlier call is refused in a later one, reported by
// the item's index in its own call. A call whose context ends while it is
// queued is never written.
func TestPostgresCommitIssuancesCallsShareOneCommit(t *testing.T) {
	s := mustOpen(t, postgresSchema(t), "")
	var batches []int
	var mu sync.Mutex
	s.ObserveCommits(func(n int) { mu.Lock(); batches = append(batches, n); mu.Unlock() })
	release := holdGroup(t, s.issuances)

	type outcome struct {
		results []error
		err     error
	}
	queue := func(ctx context.Context, n int, items ...store.Issuance) <-chan outcome {
		done := make(chan outcome, 1)
		go func() {
			r, err := s.CommitIssuances(ctx, items)
			done <- outcome{r, err}
		}()
		waitGroupQueued(t, s.issuances, n)
		return done
	}
	first := queue(context.Background(), 1, certIssuance("tok-a", "01"), certIssuance("tok-b", "02"))
	replay := queue(context.Background(), 2, certIssuance("tok-c", "03"), certIssuance("tok-a", "04"))
	conflict := queue(context.Background(), 3, certIssuance("tok-d", "02"))
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := queue(ctx, 4, certIssuance("tok-e", "05"))
	cancel()
	if o := <-gaveUp; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("call given up while queued: %v, want context.Canceled", o.err)
	}
	release()

	if o := <-first; o.err != nil || o.results[0] != nil || o.results[1] != nil {
		t.Errorf("first call: %v %v", o.results, o.err)
	}
	o := <-replay
	if o.err != nil || o.results[0] != nil || !errors.Is(o.results[1], store.ErrTokenReplayed) {
		t.Errorf("second call: %v %v, want item 1 refused as replayed", o.results, o.err)
	} else if !strings.Contains(o.results[1].Error(), "item 1") {
		t.Errorf("replay reported as %q, want its index in its own call (item 1)", o.results[1])
	}
	if o := <-conflict; o.err != nil || !errors.Is(o.results[0], store.ErrConflict) {
		t.Errorf("third call: %v %v, want its serial refused as taken", o.results, o.err)
	}
	for serial, want := range map[string]bool{"01": true, "02": true, "03": true, "04": false, "05": false} {
		_, err := s.GetCertificate(context.Background(), store.Serial(serial))
		if got := err == nil; got != want {
			t.Errorf("certificate %s recorded: %v, want %v (%v)", serial, got, want, err)
		}
	}
	if got := tokens(t, s); !slices.Equal(got, []string{"tok-a", "tok-b", "tok-c"}) {
		t.Errorf("consumed token ids %v, want tok-a, tok-b, tok-c", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(batches, []int{3}) {
		t.Errorf("commits observed %v, want one of 3 calls", batches)
	}
}

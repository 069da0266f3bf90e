package sqlstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// groupCommit lets concurrent writes share one durable commit, since each
// commit costs a sync (SQLite's fdatasync, PostgreSQL's WAL flush and round
// trips) however little it writes. It is the store's one group commit: the
// SQLite writer runs every write through one, and CommitIssuances on
// PostgreSQL runs its batches through another.
//
// A caller queues its write; the caller that takes the lead runs every write
// queued, its own among them, as one batch. Writes queued while a batch runs
// make the next batch: there is no goroutine, a lone write commits at once,
// and under load a batch holds what arrived during the previous commit.
// Under load (the previous batch held more than one write) the leader first
// lingers a moment, so that the writes being prepared right now — the
// certificates being signed — join this commit rather than pay for the next.
type groupCommit[T any] struct {
	// commit runs batch in one transaction. It takes each write (take)
	// before running it and sets the write's err; writes it leaves queued
	// get errNotRun. groupCommit closes the done channels.
	commit func(batch []*queuedWrite[T])

	// observe, if set, is told how many writes each batch committed or
	// refused.
	observe atomic.Pointer[func(writes int)]

	// linger is how long a leader waits under load before it takes the
	// queue (0: never).
	linger time.Duration

	// lead holds a token while a caller runs a batch; lastBatch, the size
	// of the previous batch, is the leader's.
	lead      chan struct{}
	lastBatch int

	mu    sync.Mutex // guards queue
	queue []*queuedWrite[T]
}

// defaultLinger is the linger of the store's group commits: long enough for
// a signing in progress on another core to finish, short beside a commit's
// sync. (Measured: 300 µs, 700 µs and 2 ms were no better; see
// docs/BENCHMARKS.md.)
const defaultLinger = 500 * time.Microsecond

func newGroupCommit[T any](commit func(batch []*queuedWrite[T]), linger time.Duration) *groupCommit[T] {
	return &groupCommit[T]{commit: commit, linger: linger, lead: make(chan struct{}, 1)}
}

// queuedWrite is one caller's write, waiting for a batch to run it.
type queuedWrite[T any] struct {
	ctx   context.Context
	value T
	// state moves from writeQueued to writeTaken when a batch takes the
	// write, or to writeAbandoned when its caller, its context ended, gives
	// up waiting first.
	state atomic.Int32
	// err is the write's outcome, and panicked what it panicked with, if it
	// did; both are set before done is closed.
	err      error
	panicked any
	done     chan struct{}
}

const (
	writeQueued int32 = iota
	writeTaken
	writeAbandoned
)

// take claims w for the batch running it: false when its caller has
// abandoned it (or a batch took it already).
func (w *queuedWrite[T]) take() bool { return w.state.CompareAndSwap(writeQueued, writeTaken) }

// errNotRun is the outcome of a write its batch did not reach.
var errNotRun = errors.New("write not run: its batch ended first")

// do queues value and returns its outcome once the batch that took it has
// committed or failed. When ctx ends before a batch takes it, do returns
// ctx.Err() and the write is never run; once taken, the write runs to its
// end, and the batch decides what an ended context means to it. A panic in
// the batch's work for this write is raised again here, in the caller's
// goroutine.
func (g *groupCommit[T]) do(ctx context.Context, value T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &queuedWrite[T]{ctx: ctx, value: value, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		if w.state.CompareAndSwap(writeQueued, writeAbandoned) {
			return ctx.Err()
		}
		<-w.done // a batch has taken it
	case g.lead <- struct{}{}:
		// Unless a batch has already run it, it is still queued: run the
		// queue.
		select {
		case <-w.done:
		default:
			if g.linger > 0 && g.lastBatch > 1 {
				time.Sleep(g.linger)
			}
			g.mu.Lock()
			batch := g.queue
			g.queue = nil
			g.mu.Unlock()
			g.run(batch)
		}
		<-g.lead
		<-w.done
	}
	if w.panicked != nil {
		panic(w.panicked)
	}
	return w.err
}

// run commits batch and settles every write in it that was not abandoned.
func (g *groupCommit[T]) run(batch []*queuedWrite[T]) {
	g.lastBatch = len(batch)
	g.commit(batch)
	ran := 0
	for _, w := range batch {
		if w.take() {
			w.err = errNotRun
		}
		if w.state.Load() == writeTaken {
			ran++
			close(w.done)
		}
	}
	if observe := g.observe.Load(); observe != nil && ran > 0 {
		(*observe)(ran)
	}
}

// takeAll takes every write of batch not abandoned, and gives those whose
// context has ended its error; it returns the writes left to run.
func takeAll[T any](batch []*queuedWrite[T]) []*queuedWrite[T] {
	live := make([]*queuedWrite[T], 0, len(batch))
	for _, w := range batch {
		if !w.take() {
			continue
		}
		if err := w.ctx.Err(); err != nil {
			w.err = err
			continue
		}
		live = append(live, w)
	}
	return live
}

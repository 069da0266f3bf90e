package ca

import (
	"context"
	"errors"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// committer makes issuance durable with group commit: every request hands its
// store.Issuance to one loop, which writes all that are waiting in a single
// transaction and then answers each. Under load a batch holds as many items as
// arrived during the previous commit, so the cost of a durable commit is
// shared; when idle a batch holds one item and adds no delay.
type committer struct {
	certs    store.Certificates
	queue    chan *pendingIssuance
	maxBatch int
	linger   time.Duration
	observe  func(batchSize int)
}

type pendingIssuance struct {
	item store.Issuance
	done chan error
}

func newCommitter(certs store.Certificates, maxBatch int, linger time.Duration, observe func(int)) *committer {
	if maxBatch <= 0 {
		maxBatch = 256
	}
	if observe == nil {
		observe = func(int) {}
	}
	return &committer{certs: certs, queue: make(chan *pendingIssuance, 4*maxBatch), maxBatch: maxBatch, linger: linger, observe: observe}
}

// errCommitterStopped is returned to requests still queued when Run returns.
var errCommitterStopped = errors.New("ca: issuance committer stopped")

// commit queues item and waits until it is durable. It returns nil, or the
// item's own result (store.ErrTokenReplayed, store.ErrConflict), or the batch
// error. If ctx ends first the item may still be written.
func (c *committer) commit(ctx context.Context, item store.Issuance) error {
	p := &pendingIssuance{item: item, done: make(chan error, 1)}
	select {
	case c.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes batches until ctx ends, then fails whatever is still queued.
func (c *committer) run(ctx context.Context) error {
	batch := make([]*pendingIssuance, 0, c.maxBatch)
	items := make([]store.Issuance, 0, c.maxBatch)
	lastSize := 0
	var lingerTimer *time.Timer
	for {
		select {
		case <-ctx.Done():
			c.drain()
			return nil
		case p := <-c.queue:
			batch = append(batch[:0], p)
		}
	fill:
		for len(batch) < c.maxBatch {
			select {
			case p := <-c.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		// Under load (the last batch held more than one item), wait a
		// moment for the requests being signed right now, so that one
		// commit serves them all; when idle, commit at once.
		if c.linger > 0 && lastSize > 1 && len(batch) < c.maxBatch {
			if lingerTimer == nil {
				lingerTimer = time.NewTimer(c.linger)
			} else {
				lingerTimer.Reset(c.linger)
			}
		linger:
			for len(batch) < c.maxBatch {
				select {
				case p := <-c.queue:
					batch = append(batch, p)
				case <-lingerTimer.C:
					break linger
				}
			}
			lingerTimer.Stop()
		}
		lastSize = len(batch)
		items = items[:0]
		for _, p := range batch {
			items = append(items, p.item)
		}
		c.observe(len(items))
		// The commit itself must not be cut short by shutdown: finish it
		// so no request is left not knowing whether it was recorded.
		results, err := c.certs.CommitIssuances(context.WithoutCancel(ctx), items)
		for i, p := range batch {
			switch {
			case err != nil:
				p.done <- err
			case i < len(results):
				p.done <- results[i]
			default:
				p.done <- errors.New("ca: store returned too few results")
			}
		}
		clear(batch)
	}
}

func (c *committer) drain() {
	for {
		select {
		case p := <-c.queue:
			p.done <- errCommitterStopped
		default:
			return
		}
	}
}

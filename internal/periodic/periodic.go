// Package periodic owns the loop of the server's background jobs (scan
// schedules, alert evaluation and delivery): run a job, wait an interval or
// a wake-up, run it again, until the context ends.
package periodic

import (
	"context"
	"sync"
	"time"
)

// Waker lets others make a job run now rather than at its next tick. The
// zero value is ready to use; wake-ups while the job runs fold into one.
type Waker struct {
	once sync.Once
	ch   chan struct{}
}

func (w *Waker) c() chan struct{} {
	w.once.Do(func() { w.ch = make(chan struct{}, 1) })
	return w.ch
}

// Wake asks for a run now; it never blocks.
func (w *Waker) Wake() {
	select {
	case w.c() <- struct{}{}:
	default:
	}
}

// Run calls job at once, then every interval or when w is woken, until ctx
// ends; it returns nil then.
func Run(ctx context.Context, every time.Duration, w *Waker, job func(context.Context)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		job(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.c():
		}
	}
}

// Sleep waits d or until ctx ends, and reports whether it waited d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

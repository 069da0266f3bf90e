// Package leader owns leader election among the replicas that share one
// store: which replica runs the singleton jobs (CRL builds, scheduled
// scans, alert evaluation and delivery, audit checkpoints), and starting
// and stopping those jobs as leadership comes and goes.
//
// The store provides the lock (store.Leadership: a PostgreSQL advisory
// lock on a session of its own, which PostgreSQL releases when the holder
// dies). The Elector campaigns every CheckEvery; while it leads it checks
// its session every CheckEvery, and at the first failed check it stops its
// jobs, so a leader cut off from the database stops leading before
// PostgreSQL can hand the lock to another replica. A replica that stops
// stops its jobs first, then gives the leadership up, so that terms never
// overlap on a clean stop.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/store"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCheckEvery is how often a follower campaigns and a leader checks
// its session.
const DefaultCheckEvery = 500 * time.Millisecond

// Job is a singleton job: Run runs until ctx ends (the term is over or
// the server stops) and then returns nil. A Job that returns before, or
// with an error, stops the Elector with that error.
type Job struct {
	Name string
	Run  func(ctx context.Context) error
}

// Elector campaigns for one leadership and runs its jobs while it leads.
type Elector struct {
	Store store.Leadership
	// Name is the leadership campaigned for.
	Name string
	// CheckEvery (default DefaultCheckEvery).
	CheckEvery time.Duration
	// Grace is how long a replica that won the leadership waits before it
	// starts the jobs: long enough for a previous leader whose session
	// the database ended (an administrator, a restart of PostgreSQL) to
	// notice at its next check and stop its own. 0 means four check
	// intervals (a check and its timeout); negative means none, for a
	// store where only this process can lead (SQLite).
	Grace  time.Duration
	Logger *slog.Logger
	// OnChange, if set, is called with true when a term starts (before
	// the jobs) and with false once the jobs of a term have stopped.
	OnChange func(leading bool)

	leading atomic.Bool
	terms   atomic.Int64
}

// Leading reports whether this replica leads now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Terms is how many terms this replica has led.
func (e *Elector) Terms() int64 { return e.terms.Load() }

func (e *Elector) every() time.Duration {
	if e.CheckEvery > 0 {
		return e.CheckEvery
	}
	return DefaultCheckEvery
}

func (e *Elector) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// Run campaigns until ctx ends, running jobs during each term it leads. It
// returns nil when ctx ends (after the jobs stopped and the leadership was
// given up), or the error of a job that failed.
func (e *Elector) Run(ctx context.Context, jobs ...Job) error {
	every := e.every()
	var lastErr string
	for {
		err := e.campaign(ctx, jobs)
		if ctx.Err() != nil {
			return nil
		}
		var failed *jobError
		if errors.As(err, &failed) {
			return err
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != "" && msg != lastErr {
			// Said once per kind of failure, not every second.
			e.log().Warn("leader election: the store session failed; campaigning again", "error", err)
		}
		lastErr = msg
		if !periodic.Sleep(ctx, every) {
			return nil
		}
	}
}

// jobError is a job that failed: it stops the Elector.
type jobError struct {
	name string
	err  error
}

func (j *jobError) Error() string { return "leader job " + j.name + ": " + j.err.Error() }
func (j *jobError) Unwrap() error { return j.err }

// campaign opens a session and campaigns on it until the session is lost
// or ctx ends.
func (e *Elector) campaign(ctx context.Context, jobs []Job) error {
	every := e.every()
	sctx, cancel := context.WithTimeout(ctx, 2*every)
	sess, err := e.Store.LeaderSession(sctx, e.Name)
	cancel()
	if err != nil {
		return err
	}
	defer sess.Close()
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*every)
		won, err := sess.TryLead(tctx)
		cancel()
		if err != nil {
			return err
		}
		if won {
			return e.lead(ctx, sess, jobs)
		}
		if !periodic.Sleep(ctx, every) {
			return nil
		}
	}
}

// lead runs one term: the jobs, until ctx ends, a check of the session
// fails, or a job fails.
func (e *Elector) lead(ctx context.Context, sess store.LeaderSession, jobs []Job) error {
	every := e.every()
	if grace := e.grace(); grace > 0 {
		e.log().Info("leader election: won the leadership; starting the singleton jobs after the grace period", "leadership", e.Name, "grace", grace)
		for waited := time.Duration(0); waited < grace; waited += every {
			if !periodic.Sleep(ctx, min(every, grace-waited)) {
				return nil
			}
			if err := e.check(ctx, sess); err != nil {
				return err
			}
		}
	}
	term := e.terms.Add(1)
	start := time.Now()
	e.log().Info("leader election: this replica leads; starting the singleton jobs", "leadership", e.Name, "term", term)
	e.leading.Store(true)
	if e.OnChange != nil {
		e.OnChange(true)
	}
	termCtx, stop := context.WithCancel(ctx)
	failed := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := j.Run(termCtx)
			if termCtx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped by itself")
			}
			failed <- &jobError{name: j.Name, err: err}
		}()
	}
	end := func(reason string) {
		stop()
		wg.Wait()
		e.leading.Store(false)
		if e.OnChange != nil {
			e.OnChange(false)
		}
		e.log().Info("leader election: this replica no longer leads; the singleton jobs stopped", "leadership", e.Name,
			"term", term, "reason", reason, "led_for", time.Since(start).Round(time.Millisecond))
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			end("stopping")
			return nil
		case err := <-failed:
			end("a job failed")
			return err
		case <-tick.C:
		}
		if err := e.check(ctx, sess); err != nil {
			end("the store session was lost")
			return err
		}
	}
}

// check checks the session. A check may take up to three intervals (a
// loaded database), so a leader cut off stops within four: well before
// PostgreSQL's keepalives end its session (about ten seconds) and let
// another replica lead.
func (e *Elector) check(ctx context.Context, sess store.LeaderSession) error {
	cctx, cancel := context.WithTimeout(ctx, 3*e.every())
	defer cancel()
	if err := sess.Check(cctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("lost the leader session: %w", err)
	}
	return nil
}

func (e *Elector) grace() time.Duration {
	switch {
	case e.Grace < 0:
		return 0
	case e.Grace == 0:
		return 4 * e.every()
	}
	return e.Grace
}

// Register adds the election's metrics to reg: meshpki_leader (1 while
// this replica leads) and meshpki_leader_terms_total.
func (e *Elector) Register(reg prometheus.Registerer) error {
	return errors.Join(
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshpki_leader",
			Help: "1 while this replica is the elected leader that runs the singleton jobs, else 0."},
			func() float64 {
				if e.Leading() {
					return 1
				}
				return 0
			})),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshpki_leader_terms_total",
			Help: "Terms this replica has led since it started."},
			func() float64 { return float64(e.Terms()) })),
	)
}

package leader_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/leader"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/pgtest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"

	"github.com/prometheus/client_golang/prometheus"
)

// replicas opens n stores on one database: PostgreSQL when the tests have
// one (CI always), else one SQLite file (leadership settled within the
// process).
func replicas(t *testing.T, n int) (stores []store.Store, url string) {
	t.Helper()
	dir := ""
	if url = postgres(t); url == "" {
		dir = t.TempDir()
	}
	for range n {
		st, err := sqlstore.Open(context.Background(), url, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	return stores, url
}

func postgres(t *testing.T) string {
	t.Helper()
	if os.Getenv("MESHPKI_TEST_POSTGRES_URL") == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI sets MESHPKI_TEST_POSTGRES_URL")
		}
		return ""
	}
	return pgtest.URL(t)
}

// terms records which replica runs the job, and whether two ever did at
// once.
type terms struct {
	mu      sync.Mutex
	running map[int]bool
	overlap bool
	started []int
}

func (tr *terms) job(replica int) leader.Job {
	return leader.Job{Name: "probe", Run: func(ctx context.Context) error {
		tr.mu.Lock()
		if len(tr.running) > 0 {
			tr.overlap = true
		}
		tr.running[replica] = true
		tr.started = append(tr.started, replica)
		tr.mu.Unlock()
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a job that takes a moment to stop
		tr.mu.Lock()
		delete(tr.running, replica)
		tr.mu.Unlock()
		return nil
	}}
}

func (tr *terms) runner() (int, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for r := range tr.running {
		return r, true
	}
	return -1, false
}

func waitUntil(t *testing.T, what string, within time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Three replicas: one runs the jobs; when it stops another takes them over
// within a couple of check intervals, and terms never overlap.
func TestOneReplicaRunsTheJobsAndHandsThemOver(t *testing.T) {
	stores, _ := replicas(t, 3)
	tr := &terms{running: map[int]bool{}}
	electors := make([]*leader.Elector, 3)
	cancels := make([]context.CancelFunc, 3)
	done := make([]chan error, 3)
	for i, st := range stores {
		electors[i] = &leader.Elector{Store: st, Name: "jobs", CheckEvery: 100 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i], done[i] = cancel, make(chan error, 1)
		go func() { done[i] <- electors[i].Run(ctx, tr.job(i)) }()
		t.Cleanup(func() { cancel(); <-done[i] })
	}
	waitUntil(t, "a leader", 5*time.Second, func() bool { _, ok := tr.runner(); return ok })
	for range 2 {
		first, _ := tr.runner()
		leading := 0
		for _, e := range electors {
			if e.Leading() {
				leading++
			}
		}
		if leading != 1 || !electors[first].Leading() {
			t.Fatalf("%d replicas say they lead; the runner is %d", leading, first)
		}
		cancels[first]()
		if err := <-done[first]; err != nil {
			t.Fatal(err)
		}
		done[first] <- nil // for the cleanup
		took := waitUntil(t, "a new leader", 5*time.Second, func() bool { r, ok := tr.runner(); return ok && r != first })
		t.Logf("replica %d stopped; another ran the jobs %s later", first, took.Round(time.Millisecond))
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.overlap {
		t.Fatal("two replicas ran the jobs at once")
	}
	if len(tr.started) != 3 {
		t.Fatalf("terms started on %v, want three (one per replica in turn)", tr.started)
	}
}

// A job that fails stops the elector with its error, after the other jobs
// stopped.
func TestFailingJobStopsTheElector(t *testing.T) {
	stores, _ := replicas(t, 1)
	var stopped atomic.Bool
	e := &leader.Elector{Store: stores[0], Name: "jobs", CheckEvery: 50 * time.Millisecond}
	err := e.Run(context.Background(),
		leader.Job{Name: "steady", Run: func(ctx context.Context) error { <-ctx.Done(); stopped.Store(true); return nil }},
		leader.Job{Name: "broken", Run: func(context.Context) error { return errors.New("disk on fire") }})
	if err == nil || !strings.Contains(err.Error(), "broken: disk on fire") || !stopped.Load() || e.Leading() {
		t.Fatalf("Run = %v; other job stopped %v; leading %v", err, stopped.Load(), e.Leading())
	}
	// The leadership was given up: another session takes it.
	sess, err := stores[0].LeaderSession(context.Background(), "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if ok, err := sess.TryLead(context.Background()); !ok || err != nil {
		t.Fatalf("the leadership was kept after the elector stopped: %v %v", ok, err)
	}
}

// On PostgreSQL, a leader whose database session dies stops its jobs at
// its next check, and another replica leads.
func TestLeaderWhoseSessionDiesStepsDown(t *testing.T) {
	stores, url := replicas(t, 2)
	if url == "" {
		t.Skip("needs MESHPKI_TEST_POSTGRES_URL (CI sets it)")
	}
	tr := &terms{running: map[int]bool{}}
	var changes atomic.Int32
	reg := prometheus.NewRegistry()
	electors := []*leader.Elector{
		{Store: stores[0], Name: "jobs", CheckEvery: 100 * time.Millisecond, OnChange: func(bool) { changes.Add(1) }},
		{Store: stores[1], Name: "jobs", CheckEvery: 100 * time.Millisecond},
	}
	if err := electors[0].Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = electors[0].Run(ctx, tr.job(0)) }()
	waitUntil(t, "replica 0 leads", 5*time.Second, func() bool { r, ok := tr.runner(); return ok && r == 0 })
	if v := gauge(t, reg, "meshpki_leader"); v != 1 {
		t.Fatalf("meshpki_leader = %v while leading", v)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = electors[1].Run(ctx, tr.job(1)) }()

	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
		AND classid = 1835365225 AND objid = hashtext(coalesce(current_schema(), '') || '/jobs')::oid AND granted`); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, "replica 1 leads", 5*time.Second, func() bool { r, ok := tr.runner(); return ok && r == 1 })
	t.Logf("replica 1 ran the jobs %s after replica 0's session was terminated", took.Round(time.Millisecond))
	if electors[0].Leading() || changes.Load() != 2 || gauge(t, reg, "meshpki_leader") != 0 || gauge(t, reg, "meshpki_leader_terms_total") != 1 {
		t.Fatalf("replica 0: leading %v, %d changes", electors[0].Leading(), changes.Load())
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.overlap {
		t.Fatal("the terms overlapped")
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

package notify

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/store/pgtest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
	"github.com/meshpki/meshpki/internal/store/storetest"
)

// BenchmarkEvaluate evaluates alerts over 1,000,000 inventory rows in
// SQLite (half issued, half scanned; notAfter spread from 10 days ago to a
// year ahead; MESHPKI_BENCH_INVENTORY overrides the size), with one rule
// that alerts on every expiry check of every certificate. "first" is the
// evaluation that finds every alert new (~11% of the rows are within the
// 30-day window or expired) and writes them with their notifications;
// "steady" is each evaluation after, which finds nothing changed. With
// MESHPKI_BENCH_POSTGRES=1 the store is PostgreSQL (a fresh schema on
// MESHPKI_TEST_POSTGRES_URL) instead, analysed after seeding as
// autovacuum would have by then (without statistics the planner scans
// the certificates table once per candidate row).
func BenchmarkEvaluate(b *testing.B) {
	ctx := context.Background()
	storeURL := benchStoreURL(b)
	st, err := sqlstore.Open(ctx, storeURL, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	storetest.SeedBenchInventory(b, st, storetest.BenchInventorySize(), now)
	if storeURL != "" {
		analyze(b, storeURL)
	}
	sealer, _ := newSealerForBench()
	svc := &Service{Store: st, Sealer: sealer, Clock: func() time.Time { return now }}
	if _, err := svc.AddChannel(ctx, "bench", "ops", KindWebhook, true, Config{URL: "https://hooks.example.test/"}); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.AddRule(ctx, "bench", "expiry", "ops", RuleSpec{Checks: []string{monitor.CheckExpired, monitor.CheckExpiresSoon, monitor.CheckRenewalOverdue}}); err != nil {
		b.Fatal(err)
	}
	e := &Evaluator{Store: st, Inventory: &monitor.Inventory{Store: st, Policy: &monitor.Policy{Now: func() time.Time { return now }}},
		Clock: func() time.Time { return now }}
	t0 := time.Now()
	first, err := e.Evaluate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	firstTook := time.Since(t0)
	b.Logf("first evaluation: %s, %+v", firstTook.Round(time.Millisecond), first)
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(firstTook.Seconds(), "s/eval")
		b.ReportMetric(float64(first.Fired), "alerts")
	})
	b.Run("steady", func(b *testing.B) {
		for b.Loop() {
			o, err := e.Evaluate(ctx)
			if err != nil || o.Fired+o.Resolved+o.Messages != 0 {
				b.Fatalf("%+v %v", o, err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/eval")
	})
}

// benchStoreURL is "" (SQLite), or a fresh PostgreSQL schema when
// MESHPKI_BENCH_POSTGRES=1.
func benchStoreURL(b *testing.B) string {
	if os.Getenv("MESHPKI_BENCH_POSTGRES") != "1" {
		return ""
	}
	return pgtest.URL(b)
}

// analyze gathers the planner's statistics of the PostgreSQL schema at url.
func analyze(b *testing.B, url string) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("ANALYZE"); err != nil {
		b.Fatal(err)
	}
}

package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/storetest"
)

// postgresEnv names the PostgreSQL database the tests use, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Each test gets a
// schema of its own in it.
const postgresEnv = "MESHPKI_TEST_POSTGRES_URL"

func mustOpen(t testing.TB, url, dataDir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, dataDir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// postgresSchema creates a schema only this test uses, dropped when it ends,
// and returns the URL of the test database with search_path set to it.
// Without MESHPKI_TEST_POSTGRES_URL the test is skipped, or fails in CI.
func postgresSchema(t testing.TB) string {
	t.Helper()
	base := os.Getenv(postgresEnv)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL suite", postgresEnv)
		}
		t.Skipf("set %s to run against PostgreSQL", postgresEnv)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", postgresEnv, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "meshpki_test_" + hex.EncodeToString(b)

	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop test schema: %v", err)
		}
		admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, "", t.TempDir())
	})
}

func TestPostgres(t *testing.T) {
	postgresSchema(t) // skip or fail before starting the subtests
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, postgresSchema(t), "")
	})
}

// Two stores on one database stand in for two replicas of the CA.
func TestPostgresReplicasShareOneDatabase(t *testing.T) {
	url := postgresSchema(t)
	storetest.CheckConcurrentCommits(t, mustOpen(t, url, ""), mustOpen(t, url, ""))
}

// Two processes may open one SQLite file; the write lock orders them.
func TestSQLiteStoresShareOneFile(t *testing.T) {
	dir := t.TempDir()
	storetest.CheckConcurrentCommits(t, mustOpen(t, "", dir), mustOpen(t, "", dir))
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, url, dataDir, wantErr string
	}{
		{"bad-scheme", "mysql://root@localhost/meshpki", "", `sqlstore: unsupported store URL scheme "mysql" (use sqlite:// or postgres://)`},
		{"bad-no-scheme", "/var/lib/meshpki.db", "", `sqlstore: unsupported store URL scheme "" (use sqlite:// or postgres://)`},
		{"bad-sqlite-no-file", "sqlite://", "", "sqlstore: sqlite store URL names no file (use sqlite:///abs/path.db)"},
		{"bad-sqlite-query", "sqlite:///tmp/x.db?_pragma=synchronous(OFF)", "", "sqlstore: sqlite store URL takes no query or fragment"},
		{"bad-no-url-no-dir", "", "", "sqlstore: no store URL and no data directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctx, tc.url, tc.dataDir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if err.Error() != tc.wantErr {
				t.Errorf("Open error %q, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestOpenDataDirCreatesPrivateFile(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "state", "meshpki")
	mustOpen(t, "", dataDir)
	checkMode(t, dataDir, 0o700|os.ModeDir)
	checkMode(t, filepath.Join(dataDir, DefaultFile), 0o600)
}

func TestOpenSQLiteURL(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "with space #1", "abs.db")
	mustOpen(t, "sqlite://"+(&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath(), "ignored")
	checkMode(t, abs, 0o600)

	t.Chdir(dir)
	mustOpen(t, "sqlite://rel/relative.db", "ignored")
	checkMode(t, filepath.Join(dir, "rel", "relative.db"), 0o600)
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

// countVersions returns the rows of schema_migrations.
func countVersions(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.read.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkReopen opens url twice in turn and once more twice at the same time,
// checking each sees one migration per version and the data of the first.
func checkReopen(t *testing.T, url, dataDir string) {
	ctx := context.Background()
	first, err := Open(ctx, url, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.AppendAudit(ctx, audit.Event{Type: audit.TypeCAInitialized, Actor: "system", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		stores [3]*Store
		errs   [3]error
	)
	stores[0], errs[0] = Open(ctx, url, dataDir)
	for i := 1; i < 3; i++ {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, url, dataDir) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("reopen %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
		if got := countVersions(t, s); got != len(migrations) {
			t.Errorf("schema_migrations has %d rows, want %d", got, len(migrations))
		}
		if seq, _, err := s.AuditHead(ctx); err != nil || seq != 1 {
			t.Errorf("reopened store: audit head %d, %v; want the record written before", seq, err)
		}
	}
}

func TestMigrationsIdempotentSQLite(t *testing.T) {
	checkReopen(t, "", t.TempDir())
}

func TestMigrationsIdempotentPostgres(t *testing.T) {
	checkReopen(t, postgresSchema(t), "")
}

func TestConcurrentFirstOpenPostgres(t *testing.T) {
	url := postgresSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(context.Background(), url, "")
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Open of an empty schema: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, "", dir)
	if _, err := s.write.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), "", dir)
	if err == nil || !strings.Contains(err.Error(), "newer than this meshpki") {
		t.Errorf("Open of a newer schema: %v, want a refusal", err)
	}
}

func TestAuditTamperDetectedSQLite(t *testing.T) {
	testAuditTamper(t, func(t *testing.T) *Store { return mustOpen(t, "", t.TempDir()) })
}

func TestAuditTamperDetectedPostgres(t *testing.T) {
	postgresSchema(t)
	testAuditTamper(t, func(t *testing.T) *Store { return mustOpen(t, postgresSchema(t), "") })
}

// testAuditTamper edits the audit tables behind the store's back and checks
// that audit.Verify names the damage.
func testAuditTamper(t *testing.T, open func(t *testing.T) *Store) {
	const records = 5
	// forge returns a correctly sealed record an attacker could compute.
	forge := func(seq int64, prev []byte) audit.Event {
		e := audit.Event{Time: time.Now(), Type: audit.TypeCertificateIssued, Actor: "admin:mallory", Subject: "ff", Outcome: "success"}
		audit.Seal(&e, seq, prev)
		return e
	}
	record := func(t *testing.T, s *Store, seq int64) audit.Event {
		events, err := s.ListAudit(context.Background(), seq-1, 1)
		if err != nil || len(events) != 1 {
			t.Fatalf("read record %d: %v", seq, err)
		}
		return events[0]
	}
	insert := func(t *testing.T, s *Store, e audit.Event) {
		if _, err := s.write.Exec(`INSERT INTO audit_events (seq, event_time, event_type, actor, subject, outcome, detail, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)`,
			e.Seq, micros(e.Time), e.Type, e.Actor, e.Subject, e.Outcome, e.PrevHash, e.Hash); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, s *Store)
		wantSeq int64
		want    string
	}{
		{"edited", func(t *testing.T, s *Store) {
			exec(t, s, `UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 3`)
		}, 3, "(edited)"},
		{"edited-time", func(t *testing.T, s *Store) {
			exec(t, s, `UPDATE audit_events SET event_time = event_time + 1 WHERE seq = 2`)
		}, 2, "(edited)"},
		{"deleted", func(t *testing.T, s *Store) {
			exec(t, s, `DELETE FROM audit_events WHERE seq = 3`)
		}, 4, "(deleted)"},
		{"deleted-tail", func(t *testing.T, s *Store) {
			exec(t, s, `DELETE FROM audit_events WHERE seq = 5`)
		}, 5, "missing at the end of the log (deleted)"},
		{"replaced-and-resealed", func(t *testing.T, s *Store) {
			exec(t, s, `DELETE FROM audit_events WHERE seq = 3`)
			insert(t, s, forge(3, record(t, s, 2).Hash))
		}, 4, "(inserted or reordered)"},
		{"inserted-at-end", func(t *testing.T, s *Store) {
			insert(t, s, forge(records+1, record(t, s, records).Hash))
		}, records + 1, "added outside the CA (inserted)"},
		{"head-edited", func(t *testing.T, s *Store) {
			exec(t, s, `UPDATE audit_head SET hash = $1 WHERE id = 1`, make([]byte, audit.HashSize))
		}, records, "does not match the stored head (edited)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			ctx := context.Background()
			for i := range records {
				ev := audit.Event{Time: time.Now(), Type: audit.TypeRequestDenied, Actor: "system", Subject: fmt.Sprint(i), Outcome: "denied"}
				if err := s.AppendAudit(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			if rep, err := audit.Verify(ctx, s, nil); err != nil || !rep.OK() {
				t.Fatalf("untouched log: %v, %v", rep.Problems, err)
			}
			tc.tamper(t, s)
			rep, err := audit.Verify(ctx, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				if p.Seq == tc.wantSeq && strings.Contains(p.Reason, tc.want) {
					return
				}
			}
			t.Errorf("Verify problems %v, want record %d %q", rep.Problems, tc.wantSeq, tc.want)
		})
	}
}

func exec(t *testing.T, s *Store, query string, args ...any) {
	t.Helper()
	if _, err := s.write.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
}

func TestFailedCommitWritesNothingSQLite(t *testing.T) {
	testFailedCommit(t, mustOpen(t, "", t.TempDir()), []string{
		`CREATE TRIGGER bad_fail BEFORE INSERT ON certificates WHEN NEW.subject = 'bad-fail'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
	})
}

func TestFailedCommitWritesNothingPostgres(t *testing.T) {
	testFailedCommit(t, mustOpen(t, postgresSchema(t), ""), []string{
		`CREATE FUNCTION bad_fail() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.subject = 'bad-fail' THEN RAISE EXCEPTION 'injected failure'; END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER bad_fail BEFORE INSERT ON certificates FOR EACH ROW EXECUTE FUNCTION bad_fail()`,
	})
}

// testFailedCommit makes the database refuse a certificate with a trigger and
// checks that the batch holding it writes nothing, and that the store, its
// write connection rolled back, commits the rest of the batch afterwards.
func testFailedCommit(t *testing.T, s *Store, trigger []string) {
	ctx := context.Background()
	for _, q := range trigger {
		exec(t, s, q)
	}
	items := newBenchIssuances().batch(3)
	items[2].Certificate.Subject = "bad-fail"
	if _, err := s.CommitIssuances(ctx, items); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("CommitIssuances with a refused certificate: %v, want the injected failure", err)
	}
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 0 {
		t.Errorf("audit head %d, %v after a failed commit; want 0", seq, err)
	}
	for _, it := range items {
		if _, err := s.GetCertificate(ctx, it.Certificate.Serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("certificate of the failed batch: %v, want ErrNotFound", err)
		}
	}
	// The items before the refused one, their token ids unconsumed, then more.
	for range 3 {
		commitBench(t, s, items[:2])
		items = newBenchIssuances().batch(2)
	}
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 6 {
		t.Errorf("audit head %d, %v; want 6 records", seq, err)
	}
}

// BenchmarkCommitIssuances commits batches of 1, 4, 16 and 64 issuances to
// SQLite in a temporary directory and, when MESHPKI_TEST_POSTGRES_URL is set,
// to PostgreSQL, each into a store already holding 20,000 certificates. Every
// item is what the CA commits for one certificate: a time-ordered token id, a
// certificate of about 550 bytes with a subject and one DNS name, both shared
// by the whole fleet, and one audit event with five details. Besides ns/op it
// reports certs/s and cpu-µs/cert, the CPU time this process spends in
// CommitIssuances per certificate (all goroutines, user and system).
func BenchmarkCommitIssuances(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"sqlite", func(b *testing.B) *Store { return mustOpen(b, "", b.TempDir()) }},
		{"postgres", func(b *testing.B) *Store { return mustOpen(b, postgresSchema(b), "") }},
	} {
		b.Run(backend.name, func(b *testing.B) {
			for _, batch := range []int{1, 4, 16, 64} {
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					benchmarkCommit(b, backend.open(b), batch)
				})
			}
		})
	}
}

// benchPrefill is how many certificates the store holds before timing, so
// that its B-trees have a realistic depth.
const benchPrefill = 20000

func benchmarkCommit(b *testing.B, s *Store, batch int) {
	gen := newBenchIssuances()
	prefill(b, s, gen)

	var cpu time.Duration
	certs := 0
	for b.Loop() {
		items := gen.batch(batch)
		before := processCPU()
		commitBench(b, s, items)
		cpu += processCPU() - before
		certs += len(items)
	}
	b.ReportMetric(float64(certs)/b.Elapsed().Seconds(), "certs/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(certs), "cpu-µs/cert")
	}
}

// prefill commits benchPrefill issuances from gen to s.
func prefill(tb testing.TB, s *Store, gen *benchIssuances) {
	tb.Helper()
	for done := 0; done < benchPrefill; done += 500 {
		commitBench(tb, s, gen.batch(500))
	}
}

// commitBench commits items, failing tb unless every one is written.
func commitBench(tb testing.TB, s *Store, items []store.Issuance) {
	tb.Helper()
	results, err := s.CommitIssuances(context.Background(), items)
	if err != nil {
		tb.Fatal(err)
	}
	for i, err := range results {
		if err != nil {
			tb.Fatalf("item %d: %v", i, err)
		}
	}
}

// benchIssuances makes issuances like the CA's for a fleet of replicas of
// one service: every certificate has the service as its subject and one DNS
// name.
type benchIssuances struct {
	start time.Time
	n     int
	der   []byte
}

func newBenchIssuances() *benchIssuances {
	g := &benchIssuances{start: time.Now(), der: make([]byte, 550)}
	rand.Read(g.der)
	return g
}

func (g *benchIssuances) batch(size int) []store.Issuance {
	items := make([]store.Issuance, size)
	for i := range items {
		g.n++
		var rnd [24]byte
		rand.Read(rnd[:])
		serial := new(big.Int).SetBytes(rnd[:16]).Text(16)
		// A time-ordered token id: 64 bits of time, then 64 random bits.
		issued := g.start.Add(time.Duration(g.n) * time.Microsecond)
		var id [16]byte
		binary.BigEndian.PutUint64(id[:8], uint64(issued.UnixNano()))
		copy(id[8:], rnd[16:])
		subject, names := "api", []string{"api.example.com"}
		notAfter := issued.Add(24 * time.Hour)
		items[i] = store.Issuance{
			TokenID:      hex.EncodeToString(id[:]),
			TokenExpires: issued.Add(5 * time.Minute),
			Certificate: &store.Certificate{
				Serial: store.Serial(serial), Provisioner: "fleet", Issuer: "default", Subject: subject,
				Names: names, NotBefore: issued.Add(-time.Minute), NotAfter: notAfter,
				DER: g.der, Status: store.StatusValid, CreatedAt: issued,
			},
			Audit: []audit.Event{{
				Time: issued, Type: audit.TypeCertificateIssued, Actor: "token:" + hex.EncodeToString(id[:]),
				Subject: serial, Outcome: "success",
				Detail: map[string]string{
					"names":       strings.Join(names, ","),
					"not_after":   notAfter.UTC().Format(time.RFC3339),
					"issuer":      "default",
					"key_type":    "EC-P256",
					"provisioner": "fleet",
				},
			}},
		}
	}
	return items
}

func TestPostgresLeadership(t *testing.T) {
	url := postgresSchema(t)
	storetest.CheckLeadership(t, mustOpen(t, url, ""), mustOpen(t, url, ""))
}

func TestSQLiteLeadership(t *testing.T) {
	dir := t.TempDir()
	storetest.CheckLeadership(t, mustOpen(t, "", dir), mustOpen(t, "", dir))
}

// PostgreSQL ends the leadership of a session that dies: the leader's
// next check fails and another session leads.
func TestPostgresLeaderSessionDies(t *testing.T) {
	url := postgresSchema(t)
	a, b := mustOpen(t, url, ""), mustOpen(t, url, "")
	ctx := context.Background()
	sa, err := a.LeaderSession(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	if ok, err := sa.TryLead(ctx); !ok || err != nil {
		t.Fatalf("lead: %v %v", ok, err)
	}
	// The leader's backend is the one session holding our advisory lock.
	var pid int
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory'
		AND classid = 1835365225 AND objid = hashtext(coalesce(current_schema(), '') || '/jobs')::oid AND granted`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := sa.Check(ctx); err == nil {
		t.Fatal("the check passed on a terminated session")
	}
	sb, err := b.LeaderSession(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := sb.TryLead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leadership stayed held after its session ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("the store lost its pool with the session: %v", err)
	}
}

func TestPostgresSignals(t *testing.T) {
	url := postgresSchema(t)
	storetest.CheckSignals(t, mustOpen(t, url, ""), mustOpen(t, url, ""), mustOpen(t, postgresSchema(t), ""))
}

func TestSQLiteSignals(t *testing.T) {
	dir := t.TempDir()
	storetest.CheckSignals(t, mustOpen(t, "", dir), mustOpen(t, "", dir), mustOpen(t, "", t.TempDir()))
}

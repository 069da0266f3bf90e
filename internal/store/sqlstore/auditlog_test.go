package sqlstore

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/audit"
)

// TestCertificateAuditPlanSQLite checks that a certificate's trail is read
// by key and by the partial index, not by scanning the log.
func TestCertificateAuditPlanSQLite(t *testing.T) {
	s := mustOpen(t, "", t.TempDir())
	plan := queryPlan(t, s, certificateAudit, "01", 10)
	for _, want := range []string{"audit_events_later", "INTEGER PRIMARY KEY (rowid>? AND rowid<?)"} {
		if !slices.ContainsFunc(plan, func(d string) bool { return strings.Contains(d, want) }) {
			t.Errorf("plan %q does not use %s", plan, want)
		}
	}
	if slices.ContainsFunc(plan, func(d string) bool { return strings.HasPrefix(d, "SCAN audit_events") }) {
		t.Errorf("plan %q scans the audit log", plan)
	}
}

func TestCertificateAuditBackfillSQLite(t *testing.T) {
	testCertificateAuditBackfill(t, mustOpen(t, "", t.TempDir()))
}

func TestCertificateAuditBackfillPostgres(t *testing.T) {
	testCertificateAuditBackfill(t, mustOpen(t, postgresSchema(t), ""))
}

// testCertificateAuditBackfill forgets where certificates' issuance records
// are, as rows written before migration 10 are, and runs the migration's
// backfill: each certificate's trail has its issuance again.
func testCertificateAuditBackfill(t *testing.T, s *Store) {
	ctx := context.Background()
	gen := newBenchIssuances()
	items := gen.batch(5)
	items[2].Audit = nil
	commitBench(t, s, items)
	if _, err := s.write.Exec(`UPDATE certificates SET audit_seq = 0`); err != nil {
		t.Fatal(err)
	}
	m := migrations[9]
	for _, stmt := range m[1:4] {
		if _, err := s.write.Exec(s.dialect.render(stmt)); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for i, it := range items {
		got, err := s.CertificateAudit(ctx, it.Certificate.Serial, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if i == 2 {
			want = 0
		}
		if len(got) != want || (want == 1 && got[0].Type != audit.TypeCertificateIssued) {
			t.Errorf("certificate %d: trail %+v after the backfill", i, got)
		}
	}
	var seqs []int64
	rows, err := s.read.Query(`SELECT audit_seq FROM certificates ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, v)
	}
	if want := []int64{1, 2, 0, 3, 4}; !slices.Equal(seqs, want) {
		t.Errorf("audit_seq after the backfill %v, want %v", seqs, want)
	}
}

// queryPlan is the detail column of SQLite's EXPLAIN QUERY PLAN of query.
func queryPlan(t *testing.T, s *Store, query string, args ...any) []string {
	t.Helper()
	rows, err := s.read.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var (
			id, parent, unused int
			detail             string
		)
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

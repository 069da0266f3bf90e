// Package pgtest owns giving a test its own PostgreSQL schema on the
// server MESHPKI_TEST_POSTGRES_URL names, so that tests sharing that
// database never see each other's rows.
package pgtest

import (
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver for schema set-up
)

// URL returns the test PostgreSQL URL with a fresh schema that is dropped
// when the test ends. Without MESHPKI_TEST_POSTGRES_URL it skips the test,
// except under CI=true, where it fails: CI never skips PostgreSQL.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("MESHPKI_TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("MESHPKI_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
		}
		t.Skip("MESHPKI_TEST_POSTGRES_URL not set")
	}
	schema := fmt.Sprintf("t_%d", time.Now().UnixNano())
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("pgtest: PostgreSQL at MESHPKI_TEST_POSTGRES_URL: %v", err)
	}
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

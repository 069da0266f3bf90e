package servertest

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver for schema set-up
)

func openPG(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("servertest: PostgreSQL at MESHPKI_TEST_POSTGRES_URL: %v", err)
	}
	return db
}

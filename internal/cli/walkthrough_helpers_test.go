package cli

import (
	"database/sql"
	"encoding/pem"
	"io"
	"testing"

	"github.com/meshpki/meshpki/internal/servertest"

	_ "modernc.org/sqlite" // to tamper with a store in tests
)

// getBody fetches a path from the test server without a client certificate.
func getBody(t *testing.T, in *servertest.Instance, path string) []byte {
	t.Helper()
	resp, err := in.Anonymous.Get(in.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return b
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func tamperWithSQL(t *testing.T, dbFile, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatal(err)
	}
}

package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// dialect holds everything that differs between SQLite and PostgreSQL. The
// rest of the SQL, including $n placeholders (SQLite accepts them too), is
// shared.
type dialect struct {
	name string
	// bytes is the column type for byte strings.
	bytes string
	// keyText is the column type for text keys listed in order: byte order,
	// whatever the database's default collation.
	keyText string
	// genesis is an expression for audit.GenesisHash (32 zero bytes).
	genesis string
	// lockRow is appended to a SELECT to hold the row until commit.
	lockRow string
	// migrateLock, run first in the migration transaction, serialises
	// migrations by concurrent processes ("" when the transaction itself
	// already does).
	migrateLock string
	// numbered says placeholders in generated statements are $1, $2, …
	// rather than ?. SQLite takes $n too, but resolves each through a list
	// of names, which makes a statement of thousands of them quadratic.
	numbered bool
}

// placeholder is the n-th (1-based) bind parameter of a generated statement.
func (d *dialect) placeholder(n int) string {
	if d.numbered {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

var sqliteDialect = &dialect{
	name:    "sqlite",
	bytes:   "BLOB",
	keyText: "TEXT COLLATE BINARY",
	genesis: "zeroblob(32)",
	// A write transaction begins IMMEDIATE and so already holds the
	// database's single write lock.
	lockRow:     "",
	migrateLock: "",
}

var postgresDialect = &dialect{
	name:    "postgres",
	bytes:   "BYTEA",
	keyText: `TEXT COLLATE "C"`,
	genesis: "decode(repeat('00', 32), 'hex')",
	lockRow: " FOR UPDATE",
	// Transaction-scoped, keyed by "mesh" in ASCII and by schema, so that
	// stores in different schemas of one database migrate independently.
	migrateLock: "SELECT pg_advisory_xact_lock(1835365224, hashtext(coalesce(current_schema(), '')))",
	numbered:    true,
}

// migrations are the schema versions in order: migrations[i] brings the
// schema to version i+1. Never edit one that has shipped; append a new one.
// {bytes}, {keytext} and {genesis} are replaced per dialect.
var migrations = [][]string{
	// 1: certificates, token ids, provisioners, the audit log.
	{
		`CREATE TABLE certificates (
			serial            {keytext} PRIMARY KEY,
			provisioner       TEXT NOT NULL,
			issuer            TEXT NOT NULL,
			subject           TEXT NOT NULL,
			names             TEXT NOT NULL, -- JSON array of the SANs, in certificate order
			not_before        BIGINT NOT NULL, -- unix microseconds, like every time
			not_after         BIGINT NOT NULL,
			der               {bytes} NOT NULL,
			status            TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
			revoked_at        BIGINT,
			revocation_reason INTEGER NOT NULL,
			renewed_from      TEXT NOT NULL,
			created_at        BIGINT NOT NULL
		)`,
		`CREATE INDEX certificates_not_after ON certificates (not_after)`,
		// The subject and every SAN of each certificate, for lookup by name.
		`CREATE TABLE cert_names (
			name   TEXT NOT NULL,
			serial {keytext} NOT NULL REFERENCES certificates (serial),
			PRIMARY KEY (name, serial)
		)`,
		`CREATE TABLE tokens (
			id         TEXT PRIMARY KEY,
			expires_at BIGINT NOT NULL
		)`,
		`CREATE INDEX tokens_expires_at ON tokens (expires_at)`,
		`CREATE TABLE provisioners (
			name       {keytext} PRIMARY KEY,
			type       TEXT NOT NULL,
			policy     TEXT NOT NULL, -- policy.Policy as JSON
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE TABLE audit_events (
			seq        BIGINT PRIMARY KEY,
			event_time BIGINT NOT NULL,
			event_type TEXT NOT NULL,
			actor      TEXT NOT NULL,
			subject    TEXT NOT NULL,
			outcome    TEXT NOT NULL,
			detail     TEXT, -- JSON object, NULL when empty
			prev_hash  {bytes} NOT NULL,
			hash       {bytes} NOT NULL
		)`,
		// The last record appended: what audit.Verify checks the log reaches.
		`CREATE TABLE audit_head (
			id   INTEGER PRIMARY KEY CHECK (id = 1),
			seq  BIGINT NOT NULL,
			hash {bytes} NOT NULL
		)`,
		`INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, {genesis})`,
	},
}

// render fills in the dialect's parts of a migration statement.
func (d *dialect) render(stmt string) string {
	return strings.NewReplacer(
		"{bytes}", d.bytes,
		"{keytext}", d.keyText,
		"{genesis}", d.genesis,
	).Replace(stmt)
}

// migrate brings the schema to the latest version in one transaction, so a
// failed migration leaves the previous version intact. Concurrent Opens are
// serialised by the write lock (SQLite) or an advisory lock (PostgreSQL).
func (s *Store) migrate(ctx context.Context) error {
	return s.writeTx(ctx, "migrate schema", func(tx *sql.Tx) error {
		if s.dialect.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.migrateLock); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > len(migrations) {
			return fmt.Errorf("database schema is version %d, newer than this meshpki (%d): upgrade meshpki", current, len(migrations))
		}
		for i := current; i < len(migrations); i++ {
			version := i + 1
			for _, stmt := range migrations[i] {
				if _, err := tx.ExecContext(ctx, s.dialect.render(stmt)); err != nil {
					return fmt.Errorf("version %d: %w", version, err)
				}
			}
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				version, micros(s.now())); err != nil {
				return fmt.Errorf("version %d: %w", version, err)
			}
		}
		return nil
	})
}

// Package sqlstore owns meshpki's durable state in SQL: one implementation of
// store.Store for both SQLite (modernc.org/sqlite, pure Go) and PostgreSQL
// (pgx through database/sql). The SQL is shared; the dialect type holds the
// few places the two differ: column types, byte-ordered text, row locking and
// the migration lock.
//
// Open picks the backend from a URL:
//
//	""                       SQLite at <dataDir>/meshpki.db
//	sqlite:///abs/path.db    SQLite at an absolute path
//	sqlite://relative.db     SQLite relative to the working directory
//	postgres://… postgresql://…  PostgreSQL
//
// The path of a sqlite URL is percent-decoded: write "#" as %23, "?" as %3F.
//
// The schema is versioned (table schema_migrations) and migrated at Open,
// under a lock, so replicas may start together.
//
// SQLite runs in WAL mode with synchronous=FULL: every commit is durable when
// the method returns. Writes go through a single connection that begins its
// transactions IMMEDIATE, reads through a separate pool. On PostgreSQL every
// write that adds rows first locks the one row of audit_head (SELECT … FOR
// UPDATE), which serialises those writers across replicas just as SQLite's
// write lock does. Under that lock CommitIssuances reads which of a batch's
// token ids and serials already exist, decides every item in Go, and writes
// the accepted items with a few multi-row INSERTs: a batch costs the same
// handful of round trips whatever its size.
//
// Times are stored as unix microseconds (BIGINT) and read back in UTC; hashes
// and DER as bytes; an audit record's Detail and a provisioner's Policy as
// JSON text. Certificates are ordered by serial as text in byte order.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// Store is a store.Store backed by SQLite or PostgreSQL. It is safe for
// concurrent use.
//
// The audit event passed to RevokeCertificate and the provisioner methods is
// not appended when its Type is empty. An event whose Time is zero is stamped
// with the current time when appended.
type Store struct {
	dialect *dialect
	read    *sql.DB // reads; the same pool as write on PostgreSQL
	write   *sql.DB // writes; one connection on SQLite
	now     func() time.Time
}

var _ store.Store = (*Store)(nil)

// DefaultFile is the SQLite file name used in the data directory when the
// store URL is empty.
const DefaultFile = "meshpki.db"

// Open connects to the store named by storeURL, creating and migrating the
// schema as needed. An empty storeURL means SQLite at dataDir/meshpki.db. A SQLite file is
// created with mode 0600 in a directory created with mode 0700.
func Open(ctx context.Context, storeURL, dataDir string) (*Store, error) {
	scheme, rest, found := strings.Cut(storeURL, "://")
	if !found {
		scheme = ""
	}
	switch {
	case storeURL == "":
		if dataDir == "" {
			return nil, errors.New("sqlstore: no store URL and no data directory")
		}
		return openSQLite(ctx, filepath.Join(dataDir, DefaultFile))
	case strings.EqualFold(scheme, "sqlite"):
		if rest == "" {
			return nil, errors.New("sqlstore: sqlite store URL names no file (use sqlite:///abs/path.db)")
		}
		if strings.ContainsAny(rest, "?#") {
			return nil, errors.New("sqlstore: sqlite store URL takes no query or fragment")
		}
		path, err := url.PathUnescape(rest)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: sqlite store URL path: %w", err)
		}
		return openSQLite(ctx, filepath.FromSlash(path))
	case strings.EqualFold(scheme, "postgres"), strings.EqualFold(scheme, "postgresql"):
		return openPostgres(ctx, storeURL)
	default:
		// Never echo the URL itself: it may carry a password.
		return nil, fmt.Errorf("sqlstore: unsupported store URL scheme %q (use sqlite:// or postgres://)", scheme)
	}
}

// sqlitePragmas apply to every SQLite connection; the busy timeout covers
// another process holding the write lock or a checkpoint in progress.
var sqlitePragmas = []string{"busy_timeout(10000)", "foreign_keys(1)"}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: sqlite path: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: create data directory: %w", err)
	}
	// Create the file ourselves so it is private from the start; SQLite
	// gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlstore: create database file: %w", err)
	}

	// A file: URI so that any character in the path is escaped; the query
	// parameters are the driver's, SQLite ignores them.
	base := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()
	dsn := func(params url.Values) string {
		for _, p := range sqlitePragmas {
			params.Add("_pragma", p)
		}
		return base + "?" + params.Encode()
	}

	write, err := sql.Open("sqlite", dsn(url.Values{
		"_pragma": {"journal_mode(WAL)", "synchronous(FULL)"},
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	read, err := sql.Open("sqlite", dsn(url.Values{"_pragma": {"query_only(1)"}}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)

	s := &Store{dialect: sqliteDialect, read: read, write: write, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{dialect: postgresDialect, read: db, write: db, now: time.Now}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to postgres: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	if s.write != s.read {
		if err := s.write.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlstore: ping: %w", err)
		}
	}
	return nil
}

// Close releases the store's connections.
func (s *Store) Close() error {
	err := s.read.Close()
	if s.write != s.read {
		err = errors.Join(err, s.write.Close())
	}
	if err != nil {
		return fmt.Errorf("sqlstore: close: %w", err)
	}
	return nil
}

// writeTx runs fn in one write transaction and commits it, or rolls it back
// when fn fails. Every error is returned as "sqlstore: <op>: <cause>".
func (s *Store) writeTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: begin: %w", op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the cause is the error worth reporting
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: %s: commit: %w", op, err)
	}
	return nil
}

// lockedTx is writeTx for every write that adds tokens, certificates,
// provisioners or audit records. It first takes the store's write lock — the
// audit head row, held until commit — so such writers run one at a time in
// every replica: audit appends chain without gaps, writers cannot deadlock on
// each other's rows, and what fn reads is not changed by another writer
// before it commits. fn queues audit events with emit; they are appended,
// chained, before the commit.
func (s *Store) lockedTx(ctx context.Context, op string, fn func(tx *sql.Tx, emit func(...audit.Event)) error) error {
	return s.writeTx(ctx, op, func(tx *sql.Tx) error {
		head, err := s.lockHead(ctx, tx)
		if err != nil {
			return err
		}
		var pending []audit.Event
		emit := func(events ...audit.Event) { pending = append(pending, events...) }
		if err := fn(tx, emit); err != nil {
			return err
		}
		return s.appendEvents(ctx, tx, head, pending)
	})
}

// micros is t as unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros is the UTC time of unix microseconds us.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros stores the zero time as NULL.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// maxParams bounds the bind parameters of one multi-row statement, well under
// both SQLite's (32766) and PostgreSQL's (65535) limits.
const maxParams = 4000

// insertRows inserts rows with as few multi-row INSERT statements as the
// parameter limit allows. head is "INSERT INTO t (a, b)"; every row has the
// same number of values.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	width := len(rows[0])
	perStmt := max(1, maxParams/width)
	var q strings.Builder
	for len(rows) > 0 {
		chunk := rows[:min(perStmt, len(rows))]
		rows = rows[len(chunk):]
		q.Reset()
		q.WriteString(head)
		q.WriteString(" VALUES ")
		args := make([]any, 0, len(chunk)*width)
		for i, row := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteByte('(')
			for j, v := range row {
				if j > 0 {
					q.WriteByte(',')
				}
				args = append(args, v)
				q.WriteString(s.dialect.placeholder(len(args)))
			}
			q.WriteByte(')')
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

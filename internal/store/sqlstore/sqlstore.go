// Package sqlstore owns meshpki's durable state in SQL: one implementation of
// store.Store for both SQLite (modernc.org/sqlite, pure Go) and PostgreSQL
// (pgx, mostly through database/sql). Most SQL is shared; the dialect type holds the
// places the two differ in schema, row locking and the migration lock, and
// the writes the CA makes for every certificate take a path fitted to each
// (see below).
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
// the method returns. Reads go through a pool of connections, writes through
// one connection that the store drives through the driver itself, with its
// statements prepared once and kept, and that commits concurrent writes
// together: one transaction and one sync for all the writes queued while the
// previous commit synced, each write in a savepoint so that it fails alone
// (see sqliteWriter). On PostgreSQL every
// write that adds rows first locks the one row of audit_head (SELECT … FOR
// UPDATE), which serialises those writers across replicas just as SQLite's
// write lock does.
//
// CommitIssuances, the write the CA makes for every certificate, is built
// for the cost of each backend. On SQLite, in process, it writes the batch a
// row at a time, every INSERT reporting by the rows it changed whether a
// token id or serial was already taken. On PostgreSQL, where a statement is a
// round trip, it pipelines through pgx: one round trip begins, locks and
// reads which of the batch's token ids and serials exist; the items are
// decided in Go; a second writes all accepted rows and their audit records in
// one statement, the values passed as arrays, and commits. Two round trips
// whatever the size of the batch, and statement texts that do not depend on
// it, so pgx prepares each once per connection.
//
// The schema lets issuing append (see migrations): a certificate row goes at
// the end of its table under an increasing integer id, and a fleet's shared
// names and time-ordered token ids at the end of their ranges, so a commit
// rewrites few pages besides the leaves of the serial index.
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
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"               // registers the "sqlite" database/sql driver, and Fdatasync

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
	read    *sql.DB       // reads; the same pool as write on PostgreSQL
	write   *sql.DB       // writes; one connection on SQLite
	sqlite  *sqliteWriter // runs the writes on SQLite; nil on PostgreSQL
	// issuances runs CommitIssuances on PostgreSQL, where it is the one
	// write committed in groups; nil on SQLite, where every write is.
	issuances *groupCommit[issuanceCall]
	now       func() time.Time
	// file is the SQLite database's absolute path; "" on PostgreSQL.
	file string
}

var _ store.Store = (*Store)(nil)

// DefaultFile is the SQLite file name used in the data directory when the
// store URL is empty.
const DefaultFile = "meshpki.db"

// Open connects to the store named by storeURL, creating and migrating the
// schema as needed. An empty storeURL means SQLite at dataDir/meshpki.db. A SQLite file is
// created with mode 0600 in a directory created with mode 0700.
func Open(ctx context.Context, storeURL, dataDir string) (*Store, error) {
	return open(ctx, storeURL, dataDir, true)
}

// ErrNoStore is OpenExisting's error when there is no meshpki store where
// it was told to look.
var ErrNoStore = errors.New("sqlstore: no meshpki store there")

// OpenExisting is Open for commands that only read: it creates nothing, and
// returns an error wrapping ErrNoStore when the SQLite file does not exist
// or the PostgreSQL schema holds no meshpki tables.
func OpenExisting(ctx context.Context, storeURL, dataDir string) (*Store, error) {
	return open(ctx, storeURL, dataDir, false)
}

func open(ctx context.Context, storeURL, dataDir string, create bool) (*Store, error) {
	scheme, rest, found := strings.Cut(storeURL, "://")
	if !found {
		scheme = ""
	}
	switch {
	case storeURL == "":
		if dataDir == "" {
			return nil, errors.New("sqlstore: no store URL and no data directory")
		}
		return openSQLite(ctx, filepath.Join(dataDir, DefaultFile), create)
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
		return openSQLite(ctx, filepath.FromSlash(path), create)
	case strings.EqualFold(scheme, "postgres"), strings.EqualFold(scheme, "postgresql"):
		return openPostgres(ctx, storeURL, create)
	default:
		// Never echo the URL itself: it may carry a password.
		return nil, fmt.Errorf("sqlstore: unsupported store URL scheme %q (use sqlite:// or postgres://)", scheme)
	}
}

// sqlitePragmas apply to every SQLite connection; the busy timeout covers
// another process holding the write lock or a checkpoint in progress.
var sqlitePragmas = []string{"busy_timeout(10000)", "foreign_keys(1)"}

// sqliteWritePragmas apply to the write connection. A checkpoint copies each
// page changed since the last one back into the database once, however many
// commits changed it; checkpointing every 4000 pages (16 MiB of WAL) rather
// than SQLite's 1000 lets a page that every commit changes, the audit head
// or the end of a table, be copied once for 4000 pages written.
var sqliteWritePragmas = []string{"journal_mode(WAL)", "synchronous(FULL)", "wal_autocheckpoint(4000)"}

// sqliteReadPragmas apply to the read connections. Listings of a large
// inventory walk many pages; a 32 MiB page cache per connection (SQLite's
// default is 2 MiB) and memory-mapped reads of up to 1 GiB keep them from
// reading each page with a system call.
var sqliteReadPragmas = []string{"query_only(1)", "cache_size(-32768)", "mmap_size(1073741824)"}

func openSQLite(ctx context.Context, path string, create bool) (*Store, error) {
	// Commit with fdatasync(2) rather than fsync(2), as SQLite itself does
	// on Linux: as durable, without also flushing the file's timestamps
	// through the file system's journal. The driver's switch is
	// process-wide; meshpki has no other use for SQLite. It returns an
	// error where fdatasync does not exist, and fsync is used.
	_, _ = sqlite.Fdatasync(true)
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: sqlite path: %w", err)
	}
	if !create {
		if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s does not exist (is the directory the server's --data?)", ErrNoStore, abs)
		}
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
		"_pragma": slices.Clone(sqliteWritePragmas),
		// For migrate, the only transaction database/sql begins here.
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	read, err := sql.Open("sqlite", dsn(url.Values{"_pragma": slices.Clone(sqliteReadPragmas)}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)

	s := &Store{dialect: sqliteDialect, read: read, write: write, now: time.Now, file: abs}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.sqlite = newSQLiteWriter(write)
	return s, nil
}

func openPostgres(ctx context.Context, dsn string, create bool) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{dialect: postgresDialect, read: db, write: db, now: time.Now}
	s.issuances = newGroupCommit(s.commitPostgresCalls, defaultLinger)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to postgres: %w", err)
	}
	if !create {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_name = 'schema_migrations'`).Scan(&n)
		if err == nil && n == 0 {
			err = fmt.Errorf("%w: the database's schema holds no meshpki tables", ErrNoStore)
		}
		if err != nil {
			db.Close()
			return nil, err
		}
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
	var err error
	if s.sqlite != nil {
		err = s.sqlite.close()
	}
	err = errors.Join(err, s.read.Close())
	if s.write != s.read {
		err = errors.Join(err, s.write.Close())
	}
	if err != nil {
		return fmt.Errorf("sqlstore: close: %w", err)
	}
	return nil
}

// sqlTx runs fn in one database/sql transaction and commits it, or rolls it
// back when fn fails.
func (s *Store) sqlTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the cause is the error worth reporting
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// writer runs the statements of one write transaction: a database/sql
// transaction on PostgreSQL, SQLite's write connection in a transaction on
// SQLite.
type writer struct {
	tx     *sql.Tx       // PostgreSQL
	sqlite *sqliteWriter // SQLite
}

// exec runs query, which returns no rows, with args. On SQLite query is
// prepared once and kept: pass only constant queries.
func (w writer) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if w.sqlite != nil {
		return w.sqlite.exec(ctx, query, args...)
	}
	return w.tx.ExecContext(ctx, query, args...)
}

// queryRow runs query with args and scans its first row into dest, or
// returns sql.ErrNoRows. On SQLite query is prepared once and kept, and
// dest may hold only *int64, *int, *string and *[]byte.
func (w writer) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	if w.sqlite != nil {
		return w.sqlite.queryRow(ctx, query, args, dest...)
	}
	return w.tx.QueryRowContext(ctx, query, args...).Scan(dest...)
}

// queryStrings runs query with args and returns the first column of every
// row as a string. On SQLite query is prepared once and kept.
func (w writer) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	if w.sqlite != nil {
		return w.sqlite.queryStrings(ctx, query, args...)
	}
	rows, err := w.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// writeTx runs fn in one write transaction and commits it, or rolls it back
// when fn fails. Every error is returned as "sqlstore: <op>: <cause>".
func (s *Store) writeTx(ctx context.Context, op string, fn func(w writer) error) error {
	var err error
	if s.sqlite != nil {
		err = s.sqlite.run(ctx, func() error { return fn(writer{sqlite: s.sqlite}) })
	} else {
		err = s.sqlTx(ctx, func(tx *sql.Tx) error { return fn(writer{tx: tx}) })
	}
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	return nil
}

// lockedTx is writeTx for every write that adds tokens, certificates,
// provisioners or audit records. It first takes the store's write lock — the
// audit head row, held until commit — so such writers run one at a time in
// every replica: audit appends chain without gaps, writers cannot deadlock on
// each other's rows, and what fn reads is not changed by another writer
// before it commits. fn queues audit events with emit; they are appended,
// chained, before the commit. (CommitIssuances on PostgreSQL does the same
// in a pipeline of its own, see commitPostgres.)
//
// On SQLite several lockedTx may share one transaction, one after another
// (see sqliteWriter.run). Each reads the head inside its own savepoint, so
// it chains after the writes before it in the batch, and a write rolled
// back takes its records and its move of the head with it.
func (s *Store) lockedTx(ctx context.Context, op string, fn func(w writer, emit emitFunc) error) error {
	return s.writeTx(ctx, op, func(w writer) error {
		head, err := s.lockHead(ctx, w)
		if err != nil {
			return err
		}
		var pending []pendingEvent
		emit := func(events ...pendingEvent) int64 {
			first := head.seq + int64(len(pending)) + 1
			pending = append(pending, events...)
			return first
		}
		if err := fn(w, emit); err != nil {
			return err
		}
		return s.appendEvents(ctx, w, head, pending)
	})
}

// emitFunc queues audit events to append when a lockedTx commits, and
// returns the sequence number the first of them will have (the next one, if
// none are given).
type emitFunc = func(...pendingEvent) int64

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

// ObserveCommits has fn told, after every group commit, how many callers'
// writes it settled: every write on SQLite, CommitIssuances calls on
// PostgreSQL (see groupCommit).
func (s *Store) ObserveCommits(fn func(writes int)) {
	if s.sqlite != nil {
		s.sqlite.group.observe.Store(&fn)
		return
	}
	s.issuances.observe.Store(&fn)
}

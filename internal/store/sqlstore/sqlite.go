package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// sqliteWriter runs write transactions on SQLite's one write connection
// through the driver itself, with each statement prepared once on the
// connection and kept. Through database/sql a transaction would prepare its
// BEGIN and COMMIT anew and start a goroutine to watch its context, and a
// statement not prepared ahead would be prepared for each use; in
// modernc.org/sqlite each of those costs more than running the statement.
//
// Concurrent writes commit together through the store's group commit: the
// caller that leads a batch runs every transaction body queued in one
// transaction, each in a savepoint of its own so that a body that fails is
// rolled back alone, and commits them all with one sync.
type sqliteWriter struct {
	db *sql.DB // the write pool: one connection

	// group queues transaction bodies; the caller leading its batch alone
	// uses conn and stmts.
	group *groupCommit[func() error]
	conn  driver.Conn // the connection stmts were prepared on
	stmts map[string]driver.Stmt
}

func newSQLiteWriter(db *sql.DB) *sqliteWriter {
	w := &sqliteWriter{db: db}
	w.group = newGroupCommit(w.runBatch, defaultLinger)
	return w
}

// call runs the write's body, turning a panic into an error for the batch;
// the group commit panics again in the caller's goroutine.
func call(w *queuedWrite[func() error]) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.panicked = p
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return w.value()
}

// run runs fn in a transaction begun IMMEDIATE, so holding the database's
// write lock, and returns once it has committed; or, when fn fails, rolls
// back what fn wrote and returns fn's error. The transaction may be shared
// with other callers' functions, run one after another by the caller that
// leads the batch: fn sees what those before it wrote, and must leave the
// transaction itself alone (no COMMIT, ROLLBACK or SAVEPOINT). fn is not run
// when ctx ends before its turn, and each of its statements fails when ctx
// has ended before the statement begins; a statement that has begun is not
// interrupted, since SQLite answers an interrupted write by rolling back the
// whole transaction, the other callers' writes with it. Should fn panic, run
// panics with the same value in the caller's goroutine.
func (w *sqliteWriter) run(ctx context.Context, fn func() error) error {
	return w.group.do(ctx, fn)
}

// runBatch runs the writes of batch in one transaction and commits them.
// Writes are taken in order as their turn comes, each run between SAVEPOINT
// and RELEASE, and rolled back to its savepoint when it fails; a batch of
// one needs no savepoint. When the transaction itself fails (BEGIN, COMMIT,
// or a savepoint), every write it took or would have taken that has no
// error of its own gets that error. Statements that only manage the
// transaction run without a context that can end: a context that has ended
// is a reason to roll back, not to skip it.
func (w *sqliteWriter) runBatch(batch []*queuedWrite[func() error]) {
	var committed []*queuedWrite[func() error] // ran without error: they share the commit's outcome
	// fail gives err to the writes that ran without error and to those not
	// yet taken.
	fail := func(err error) error {
		for _, it := range committed {
			it.err = err
		}
		for _, it := range batch {
			if it.take() {
				it.err = err
			}
		}
		return err
	}
	conn, err := w.db.Conn(context.Background())
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	defer conn.Close() // no error worth reporting: Raw has settled the connection
	// An error Raw's function returns that wraps driver.ErrBadConn tells
	// database/sql to discard the connection; the writes have their errors.
	_ = conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return fail(fmt.Errorf("begin: driver connection is a %T", dc))
		}
		if c != w.conn {
			// database/sql replaced a connection it found broken, and closed
			// it with the statements prepared on it.
			w.conn, w.stmts = c, make(map[string]driver.Stmt)
		}
		bg := context.Background()
		if _, err := w.exec(bg, "BEGIN IMMEDIATE"); err != nil {
			// Should BEGIN have taken effect after all, the transaction
			// must not outlive the batch.
			_, _ = w.exec(bg, "ROLLBACK")
			return fail(fmt.Errorf("begin: %w", err))
		}
		savepoints := len(batch) > 1
		for _, it := range batch {
			if !it.take() {
				continue // abandoned by its caller
			}
			if err := it.ctx.Err(); err != nil {
				it.err = err
				continue
			}
			if !savepoints {
				if err := call(it); err != nil {
					it.err = w.rollback(err)
					return it.err
				}
				committed = append(committed, it)
				continue
			}
			if _, err := w.exec(bg, "SAVEPOINT item"); err != nil {
				return fail(w.rollback(fmt.Errorf("savepoint: %w", err)))
			}
			if err := call(it); err != nil {
				it.err = err
				if _, err := w.exec(bg, "ROLLBACK TO item"); err != nil {
					// SQLite rolls back the whole transaction after some
					// errors (I/O, disk full): the others are lost too.
					return fail(w.rollback(fmt.Errorf("roll back to savepoint after %w: %w", it.err, err)))
				}
			}
			if _, err := w.exec(bg, "RELEASE item"); err != nil {
				return fail(w.rollback(fmt.Errorf("release savepoint: %w", err)))
			}
			if it.err == nil {
				committed = append(committed, it)
			}
		}
		if len(committed) == 0 {
			return w.rollback(nil)
		}
		if _, err := w.exec(bg, "COMMIT"); err != nil {
			return fail(w.rollback(fmt.Errorf("commit: %w", err)))
		}
		return nil
	})
}

// rollback rolls back the transaction in progress, if any, and returns
// cause. When even that fails the connection's state is unknown: its
// statements are closed and the error, which wraps cause if not nil, tells
// database/sql to discard it.
func (w *sqliteWriter) rollback(cause error) error {
	// Not the caller's context: a context that has ended is a reason to
	// roll back, not to skip it.
	_, err := w.exec(context.Background(), "ROLLBACK")
	switch {
	case err == nil:
		return cause
	case cause == nil:
		w.closeStmts()
		return fmt.Errorf("rollback: %v (connection discarded: %w)", err, driver.ErrBadConn)
	default:
		w.closeStmts()
		return fmt.Errorf("%w (rollback: %v; connection discarded: %w)", cause, err, driver.ErrBadConn)
	}
}

// prepared returns the statement for query, preparing it on first use. Only
// a fixed set of queries may be passed: each is kept for the connection's
// life.
func (w *sqliteWriter) prepared(query string) (driver.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	p, ok := w.conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errors.New("driver cannot prepare with a context")
	}
	st, err := p.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

// statement returns the prepared statement for query and args converted
// for it; ctx.Err() instead when ctx has ended.
func (w *sqliteWriter) statement(ctx context.Context, query string, args []any) (driver.Stmt, []driver.NamedValue, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	st, err := w.prepared(query)
	if err != nil {
		return nil, nil, err
	}
	named, err := namedValues(args)
	if err != nil {
		return nil, nil, err
	}
	return st, named, nil
}

// exec runs query, which returns no rows, with args; ctx.Err() instead
// when ctx has ended. A statement that has begun is not interrupted (see
// run).
func (w *sqliteWriter) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, named, err := w.statement(ctx, query, args)
	if err != nil {
		return nil, err
	}
	execer, ok := st.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("driver statement cannot execute with a context")
	}
	return execer.ExecContext(context.Background(), named)
}

// query runs query, which returns rows, with args on the write connection.
// The caller closes the rows.
func (w *sqliteWriter) query(ctx context.Context, query string, args []any) (driver.Rows, error) {
	st, named, err := w.statement(ctx, query, args)
	if err != nil {
		return nil, err
	}
	queryer, ok := st.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("driver statement cannot query with a context")
	}
	return queryer.QueryContext(context.Background(), named)
}

// queryStrings runs query with args and returns the first column of every
// row, which must be text.
func (w *sqliteWriter) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := w.query(ctx, query, args)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	values := make([]driver.Value, len(rows.Columns()))
	for {
		err := rows.Next(values)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var v string
		if err := assign(&v, values[0]); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

// queryRow runs query with args and scans the first row it returns into
// dest, which may hold *int64, *int, *string and *[]byte. It returns
// sql.ErrNoRows when there is no row, and ctx.Err() when ctx has ended
// before it begins.
func (w *sqliteWriter) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	rows, err := w.query(ctx, query, args)
	if err != nil {
		return err
	}
	values := make([]driver.Value, len(rows.Columns()))
	err = rows.Next(values)
	if closeErr := rows.Close(); err == nil {
		err = closeErr
	}
	switch {
	case errors.Is(err, io.EOF):
		return sql.ErrNoRows
	case err != nil:
		return err
	case len(dest) != len(values):
		return fmt.Errorf("scan %d columns into %d values", len(values), len(dest))
	}
	for i, v := range values {
		if err := assign(dest[i], v); err != nil {
			return fmt.Errorf("column %d: %w", i+1, err)
		}
	}
	return nil
}

// close closes the statements prepared on the write connection, once the
// batch in progress, if any, has ended.
func (w *sqliteWriter) close() error {
	// The lead first, as a batch takes it: then the connection.
	w.group.lead <- struct{}{}
	defer func() { <-w.group.lead }()
	conn, err := w.db.Conn(context.Background())
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		if dc != w.conn {
			return nil // prepared on a connection database/sql has closed
		}
		return w.closeStmts()
	})
}

// closeStmts closes and forgets every statement prepared.
func (w *sqliteWriter) closeStmts() error {
	var errs []error
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	w.conn, w.stmts = nil, nil
	return errors.Join(errs...)
}

// namedValues converts args as database/sql would for a driver that takes
// only the default value types.
func namedValues(args []any) ([]driver.NamedValue, error) {
	named := make([]driver.NamedValue, len(args))
	for i, arg := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(arg)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return named, nil
}

// assign stores the column value v in dest.
func assign(dest any, v driver.Value) error {
	switch d := dest.(type) {
	case *int64:
		if n, ok := v.(int64); ok {
			*d = n
			return nil
		}
	case *int:
		if n, ok := v.(int64); ok {
			*d = int(n)
			return nil
		}
	case *string:
		switch s := v.(type) {
		case string:
			*d = s
			return nil
		case []byte:
			*d = string(s)
			return nil
		}
	case *[]byte:
		switch b := v.(type) {
		case []byte:
			*d = append([]byte(nil), b...)
			return nil
		case string:
			*d = []byte(b)
			return nil
		}
	}
	return fmt.Errorf("cannot scan %T into %T", v, dest)
}

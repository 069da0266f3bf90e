package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
)

// sqliteWriter runs write transactions on SQLite's one write connection
// through the driver itself, with each statement prepared once on the
// connection and kept. Through database/sql a transaction would prepare its
// BEGIN and COMMIT anew and start a goroutine to watch its context, and a
// statement not prepared ahead would be prepared for each use; in
// modernc.org/sqlite each of those costs more than running the statement.
type sqliteWriter struct {
	db *sql.DB // the write pool: one connection

	mu    sync.Mutex  // held by the transaction in progress
	conn  driver.Conn // the connection stmts were prepared on
	stmts map[string]driver.Stmt
}

// run runs fn in a transaction begun IMMEDIATE, so holding the database's
// write lock, and commits it, or rolls it back when fn fails.
func (w *sqliteWriter) run(ctx context.Context, fn func() error) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer conn.Close() // no error worth reporting: Raw has settled the connection
	return conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("begin: driver connection is a %T", dc)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if c != w.conn {
			// database/sql replaced a connection it found broken, and closed
			// it with the statements prepared on it.
			w.conn, w.stmts = c, make(map[string]driver.Stmt)
		}
		if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
			// Should the context have ended just as BEGIN took effect, the
			// transaction must not outlive this call.
			_, _ = w.exec(context.Background(), "ROLLBACK")
			return fmt.Errorf("begin: %w", err)
		}
		if err := fn(); err != nil {
			return w.rollback(err)
		}
		if _, err := w.exec(ctx, "COMMIT"); err != nil {
			return w.rollback(fmt.Errorf("commit: %w", err))
		}
		return nil
	})
}

// rollback rolls back the transaction fn failed in and returns cause. When
// even that fails the connection's state is unknown: its statements are
// closed and the error tells database/sql to discard it.
func (w *sqliteWriter) rollback(cause error) error {
	// Not the caller's context: a context that has ended is a reason to
	// roll back, not to skip it.
	if _, err := w.exec(context.Background(), "ROLLBACK"); err != nil {
		w.closeStmts()
		return fmt.Errorf("%w (rollback: %v; connection discarded: %w)", cause, err, driver.ErrBadConn)
	}
	return cause
}

// prepared returns the statement for query, preparing it on first use. Only
// a fixed set of queries may be passed: each is kept for the connection's
// life.
func (w *sqliteWriter) prepared(ctx context.Context, query string) (driver.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	p, ok := w.conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errors.New("driver cannot prepare with a context")
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

// exec runs query, which returns no rows, with args.
func (w *sqliteWriter) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := w.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	named, err := namedValues(args)
	if err != nil {
		return nil, err
	}
	execer, ok := st.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("driver statement cannot execute with a context")
	}
	return execer.ExecContext(ctx, named)
}

// queryRow runs query with args and scans the first row it returns into
// dest, which may hold *int64, *int, *string and *[]byte. It returns
// sql.ErrNoRows when there is no row.
func (w *sqliteWriter) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	st, err := w.prepared(ctx, query)
	if err != nil {
		return err
	}
	named, err := namedValues(args)
	if err != nil {
		return err
	}
	queryer, ok := st.(driver.StmtQueryContext)
	if !ok {
		return errors.New("driver statement cannot query with a context")
	}
	rows, err := queryer.QueryContext(ctx, named)
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

// close closes the statements prepared on the write connection.
func (w *sqliteWriter) close() error {
	conn, err := w.db.Conn(context.Background())
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		w.mu.Lock()
		defer w.mu.Unlock()
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

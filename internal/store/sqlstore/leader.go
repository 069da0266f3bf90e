package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// Leadership.
//
// On PostgreSQL a leader holds a session-level advisory lock on a
// connection of its own, taken out of the pool for as long as the session
// lasts. PostgreSQL releases the lock when that session ends: at once when
// the process dies and its socket closes, and within about ten seconds
// when the host vanishes (the session's TCP keepalives). The key is
// ("mesh"+1, hash of schema and name), so that stores in different schemas
// of one database elect independently.
//
// On SQLite one process at a time serves a database (the server's
// DIR/server.lock), so leadership is settled within the process: at most
// one session per database file and name holds it.

const (
	pgTryLead = `SELECT pg_try_advisory_lock(1835365225, hashtext(coalesce(current_schema(), '') || '/' || $1))`
	pgUnlead  = `SELECT pg_advisory_unlock(1835365225, hashtext(coalesce(current_schema(), '') || '/' || $1))`
	// unlockTimeout bounds the unlock on Close.
	unlockTimeout = 2 * time.Second
	pgKeepLive    = `SELECT set_config('tcp_keepalives_idle', '5', false), set_config('tcp_keepalives_interval', '1', false),
		set_config('tcp_keepalives_count', '5', false)`
)

// LeaderSession opens a session campaigning for the named leadership.
func (s *Store) LeaderSession(ctx context.Context, name string) (store.LeaderSession, error) {
	if s.sqlite != nil {
		return &localSession{key: s.file + "\x00" + name}, nil
	}
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: leader session: %w", err)
	}
	// Server-side keepalives end the session of a host that vanished
	// without closing its socket (ignored on Unix sockets).
	if _, err := conn.ExecContext(ctx, pgKeepLive); err != nil {
		discard(conn)
		return nil, fmt.Errorf("sqlstore: leader session: %w", err)
	}
	return &pgSession{conn: conn, name: name}, nil
}

// pgSession holds an advisory lock on its own connection.
type pgSession struct {
	conn *sql.Conn
	name string
	held bool
}

func (p *pgSession) TryLead(ctx context.Context) (bool, error) {
	if p.held {
		// The lock is re-entrant: asking again would stack a second hold.
		return true, p.Check(ctx)
	}
	var got bool
	if err := p.conn.QueryRowContext(ctx, pgTryLead, p.name).Scan(&got); err != nil {
		return false, fmt.Errorf("sqlstore: try to lead: %w", err)
	}
	p.held = got
	return got, nil
}

func (p *pgSession) Check(ctx context.Context) error {
	var one int
	if err := p.conn.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlstore: leader session: %w", err)
	}
	return nil
}

// Close unlocks (best effort: ending the session unlocks too) and ends
// the session: the connection is closed, never returned to the pool with
// the lock on it.
func (p *pgSession) Close() error {
	if p.held {
		ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		_, _ = p.conn.ExecContext(ctx, pgUnlead, p.name)
		cancel()
		p.held = false
	}
	discard(p.conn)
	return nil
}

// discard closes conn's connection to the database instead of returning
// it to the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// localLeaders records, per database file and name, the session that
// leads in this process.
var localLeaders = struct {
	sync.Mutex
	by map[string]*localSession
}{by: map[string]*localSession{}}

type localSession struct{ key string }

func (l *localSession) TryLead(context.Context) (bool, error) {
	localLeaders.Lock()
	defer localLeaders.Unlock()
	if cur := localLeaders.by[l.key]; cur != nil && cur != l {
		return false, nil
	}
	localLeaders.by[l.key] = l
	return true, nil
}

func (l *localSession) Check(context.Context) error { return nil }

func (l *localSession) Close() error {
	localLeaders.Lock()
	defer localLeaders.Unlock()
	if localLeaders.by[l.key] == l {
		delete(localLeaders.by, l.key)
	}
	return nil
}

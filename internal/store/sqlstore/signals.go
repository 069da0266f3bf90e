package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/stdlib"
)

// Signals.
//
// On PostgreSQL a signal is a NOTIFY on the channel "meshpki" whose
// payload is the schema and the topic ("public/schedules"), so that stores
// in different schemas of one database ignore each other's; a watcher
// LISTENs on a connection of its own, taken out of the pool for as long
// as it watches and closed after.
//
// On SQLite one process serves a database, so signals go from sender to
// watchers within the process, per database file.

const (
	pgSignal    = `SELECT pg_notify('meshpki', coalesce(current_schema(), '') || '/' || $1)`
	pgListen    = `LISTEN meshpki`
	pgSchema    = `SELECT coalesce(current_schema(), '')`
	maxTopicLen = 64
)

// Signal sends topic to every watcher of the store.
func (s *Store) Signal(ctx context.Context, topic string) error {
	if topic == "" || len(topic) > maxTopicLen {
		return fmt.Errorf("sqlstore: signal: a topic of 1 to %d bytes", maxTopicLen)
	}
	if s.sqlite != nil {
		localSignals.send(s.file, topic)
		return nil
	}
	if _, err := s.write.ExecContext(ctx, pgSignal, topic); err != nil {
		return fmt.Errorf("sqlstore: signal %s: %w", topic, err)
	}
	return nil
}

// Watch calls fn for every signal until ctx ends or the connection fails.
func (s *Store) Watch(ctx context.Context, fn func(topic string)) error {
	if s.sqlite != nil {
		ch, stop := localSignals.watch(s.file)
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case topic := <-ch:
				fn(topic)
			}
		}
	}
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return watchError(ctx, err)
	}
	// LISTEN stays with the session: the connection never goes back to
	// the pool.
	defer discard(conn)
	// A watcher whose database host vanished would wait for ever: the
	// session's keepalives end it (as the leader's).
	if _, err := conn.ExecContext(ctx, pgKeepLive); err != nil {
		return watchError(ctx, err)
	}
	var schema string
	if err := conn.QueryRowContext(ctx, pgSchema).Scan(&schema); err != nil {
		return watchError(ctx, err)
	}
	if _, err := conn.ExecContext(ctx, pgListen); err != nil {
		return watchError(ctx, err)
	}
	prefix := schema + "/"
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("driver connection is a %T", dc)
		}
		for {
			n, err := sc.Conn().WaitForNotification(ctx)
			if err != nil {
				return err
			}
			if topic, ok := strings.CutPrefix(n.Payload, prefix); ok {
				fn(topic)
			}
		}
	})
	return watchError(ctx, err)
}

// watchError is nil once ctx has ended, else err described.
func watchError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("sqlstore: watch signals: %w", err)
}

// localSignals fans SQLite signals out to the watchers of the same file.
var localSignals = &signalHub{by: map[string]map[chan string]struct{}{}}

type signalHub struct {
	mu sync.Mutex
	by map[string]map[chan string]struct{}
}

func (h *signalHub) watch(file string) (<-chan string, func()) {
	ch := make(chan string, 16)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.by[file] == nil {
		h.by[file] = map[chan string]struct{}{}
	}
	h.by[file][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.by[file], ch)
	}
}

// send never blocks: a watcher whose buffer is full has the same topics
// waiting already, or soon polls.
func (h *signalHub) send(file, topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.by[file] {
		select {
		case ch <- topic:
		default:
		}
	}
}

package store

import "context"

// Leadership elects one process among those that share the store: the
// replica that runs the singleton jobs (CRL builds, scheduled scans,
// alert evaluation and delivery, audit checkpoints).
type Leadership interface {
	// LeaderSession opens a session that campaigns for the named
	// leadership. The store ends a dead process's session itself, and
	// with it the leadership that session held.
	LeaderSession(ctx context.Context, name string) (LeaderSession, error)
}

// LeaderSession campaigns for one leadership and holds it once won. It is
// used by one goroutine at a time.
type LeaderSession interface {
	// TryLead takes the leadership if no other session holds it and
	// reports whether this session holds it now. It never waits for the
	// holder.
	TryLead(ctx context.Context) (bool, error)
	// Check returns nil while the session, and so any leadership it
	// holds, is alive; after an error the session is lost and must be
	// closed.
	Check(ctx context.Context) error
	// Close gives the leadership up, if held, and ends the session.
	Close() error
}

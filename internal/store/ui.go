package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// UILogin is a one-time sign-in to the dashboard, minted for an admin: the
// store keeps only a hash of its token.
type UILogin struct {
	TokenHash string // hex SHA-256 of the token
	Admin     string // the actor it signs in as, e.g. "admin:spiffe://…"
	ExpiresAt time.Time
}

// UISession is a signed-in dashboard session: the store keeps a hash of
// its cookie value and the CSRF token its forms carry.
type UISession struct {
	IDHash    string // hex SHA-256 of the session cookie's value
	Admin     string
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// UISessions keeps dashboard sign-ins and sessions, shared by replicas.
type UISessions interface {
	// CreateUILogin records l and appends ev in one transaction.
	CreateUILogin(ctx context.Context, l UILogin, ev audit.Event) error
	// RedeemUILogin uses up the login with tokenHash (unused, unexpired at
	// now) and records s as its admin's session, appending ev(admin), in
	// one transaction; it returns s with Admin set. ErrNotFound when there
	// is no such login, or it expired or was used.
	RedeemUILogin(ctx context.Context, tokenHash string, s UISession, now time.Time, ev func(admin string) audit.Event) (UISession, error)
	// GetUISession returns the session unexpired at now, or ErrNotFound.
	GetUISession(ctx context.Context, idHash string, now time.Time) (UISession, error)
	// DeleteUISession ends a session, appending ev; ErrNotFound if absent.
	DeleteUISession(ctx context.Context, idHash string, ev audit.Event) error
	// PruneUI forgets logins and sessions that expired before t.
	PruneUI(ctx context.Context, before time.Time) error
}

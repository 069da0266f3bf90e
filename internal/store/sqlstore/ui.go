package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// Statements of the dashboard's sign-ins and sessions.
const (
	insertUILogin   = `INSERT INTO ui_logins (token_hash, admin, expires_at) VALUES ($1, $2, $3)`
	redeemUILogin   = `UPDATE ui_logins SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING admin`
	insertUISession = `INSERT INTO ui_sessions (id_hash, admin, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`
	deleteUISession = `DELETE FROM ui_sessions WHERE id_hash = $1`
)

// CreateUILogin records a one-time sign-in.
func (s *Store) CreateUILogin(ctx context.Context, l store.UILogin, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create ui login: %w", err)
	}
	return s.lockedTx(ctx, "create ui login", func(w writer, emit emitFunc) error {
		if _, err := w.exec(ctx, insertUILogin, l.TokenHash, l.Admin, micros(l.ExpiresAt)); err != nil {
			return err
		}
		emit(events...)
		return nil
	})
}

// RedeemUILogin uses up a sign-in and records its session.
func (s *Store) RedeemUILogin(ctx context.Context, tokenHash string, sess store.UISession, now time.Time, ev func(admin string) audit.Event) (store.UISession, error) {
	err := s.lockedTx(ctx, "redeem ui login", func(w writer, emit emitFunc) error {
		var admin string
		err := w.queryRow(ctx, redeemUILogin, []any{tokenHash, micros(now)}, &admin)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		sess.Admin = admin
		if _, err := w.exec(ctx, insertUISession, sess.IDHash, admin, sess.CSRF, micros(sess.CreatedAt), micros(sess.ExpiresAt)); err != nil {
			return err
		}
		events, err := encodeEvent(ev(admin))
		if err != nil {
			return err
		}
		emit(events...)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.UISession{}, store.ErrNotFound
	}
	return sess, err
}

// GetUISession returns an unexpired session.
func (s *Store) GetUISession(ctx context.Context, idHash string, now time.Time) (store.UISession, error) {
	var (
		sess             store.UISession
		created, expires int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT id_hash, admin, csrf, created_at, expires_at FROM ui_sessions WHERE id_hash = $1 AND expires_at > $2`,
		idHash, micros(now)).Scan(&sess.IDHash, &sess.Admin, &sess.CSRF, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.UISession{}, store.ErrNotFound
	case err != nil:
		return store.UISession{}, fmt.Errorf("sqlstore: get ui session: %w", err)
	}
	sess.CreatedAt, sess.ExpiresAt = fromMicros(created), fromMicros(expires)
	return sess, nil
}

// DeleteUISession ends a session.
func (s *Store) DeleteUISession(ctx context.Context, idHash string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: delete ui session: %w", err)
	}
	return s.lockedTx(ctx, "delete ui session", func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, deleteUISession, idHash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		emit(events...)
		return nil
	})
}

// PruneUI forgets expired sign-ins and sessions.
func (s *Store) PruneUI(ctx context.Context, before time.Time) error {
	return s.writeTx(ctx, "prune ui", func(w writer) error {
		if _, err := w.exec(ctx, `DELETE FROM ui_logins WHERE expires_at < $1`, micros(before)); err != nil {
			return err
		}
		_, err := w.exec(ctx, `DELETE FROM ui_sessions WHERE expires_at < $1`, micros(before))
		return err
	})
}

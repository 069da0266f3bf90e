package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// ConsumeToken records a one-time token id; store.ErrTokenReplayed when it was
// already recorded.
func (s *Store) ConsumeToken(ctx context.Context, id string, expires time.Time) error {
	// Under the write lock, like every other writer of tokens (see
	// CommitIssuances).
	return s.lockedTx(ctx, "consume token", func(w writer, _ emitFunc) error {
		res, err := w.exec(ctx, `INSERT INTO tokens (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
			id, micros(expires))
		if err != nil {
			return err
		}
		return expectOneRow(res, store.ErrTokenReplayed)
	})
}

// PruneTokens forgets token ids whose tokens expired before t.
func (s *Store) PruneTokens(ctx context.Context, before time.Time) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM tokens WHERE expires_at < $1`, micros(before)); err != nil {
		return fmt.Errorf("sqlstore: prune tokens: %w", err)
	}
	return nil
}

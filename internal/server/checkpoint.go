package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
)

// Audit checkpoints: the server signs the audit chain's head with a key kept,
// encrypted, in DIR/ca/keys (never in the database), and publishes the public
// key where 'meshpki audit verify' finds it.
const (
	checkpointKeyName = "audit-checkpoint"
	// CheckpointKeyFile is the checkpoint public key (PEM), relative to DIR.
	CheckpointKeyFile = "ca/audit-checkpoint.pub"
	// DefaultCheckpointEvery is how often the head is signed when it moved.
	DefaultCheckpointEvery = 10 * time.Minute
)

// loadCheckpointKey loads (or creates) the checkpoint key and writes its
// public key to DIR/ca/audit-checkpoint.pub.
func (s *Server) loadCheckpointKey(ctx context.Context) error {
	key, kid, err := s.loadServerKey(ctx, checkpointKeyName, "audit checkpoint key")
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := keys.WriteFile(filepath.Join(s.opts.DataDir, CheckpointKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("server: write %s: %w", CheckpointKeyFile, err)
	}
	s.checkpointKey, s.checkpointKID = key, kid
	return nil
}

// checkpoint signs the audit head and appends the checkpoint, unless the log
// already ends with one.
func (s *Server) checkpoint(ctx context.Context) error {
	ev, ok, err := audit.NewCheckpoint(ctx, s.store, s.checkpointKey, s.checkpointKID, s.now())
	if err != nil || !ok {
		return err
	}
	return s.store.AppendAudit(ctx, ev)
}

// checkpoints signs the audit head at the start of the term (what the
// previous leader left unsigned) and then every checkpointEvery until ctx
// ends: a singleton job, run by the leader.
func (s *Server) checkpoints(ctx context.Context) error {
	tick := time.NewTicker(s.checkpointEvery())
	defer tick.Stop()
	for {
		if err := s.checkpoint(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("audit checkpoint failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
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

// loadCheckpointKey loads the server's checkpoint key.
func (s *Server) loadCheckpointKey(ctx context.Context) (err error) {
	s.checkpointKey, s.checkpointKID, err = loadCheckpointKey(ctx, s.opts.DataDir, s.keys)
	return err
}

// loadCheckpointKey loads (or creates) the checkpoint key and writes its
// public key to DIR/ca/audit-checkpoint.pub, unless that file already
// holds it (DIR/ca may be a read-only copy on a replica).
func loadCheckpointKey(ctx context.Context, dataDir string, ks keys.Keystore) (crypto.Signer, string, error) {
	key, kid, err := loadServerKey(ctx, ks, checkpointKeyName, "audit checkpoint key")
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, "", err
	}
	file := filepath.Join(dataDir, CheckpointKeyFile)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if old, err := os.ReadFile(file); err == nil && bytes.Equal(old, pub) {
		return key, kid, nil
	}
	if err := keys.WriteFile(file, pub, 0o644); err != nil {
		return nil, "", fmt.Errorf("server: write %s: %w", CheckpointKeyFile, err)
	}
	return key, kid, nil
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

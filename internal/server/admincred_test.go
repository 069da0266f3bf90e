package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
)

// TestAdminCredentialWritersTakeTurns: replicas sharing DIR that all find
// the admin credential missing (or due) at once write it one at a time —
// the later ones find the first's pair good and keep it — so the pair on
// disk is always one key and its own certificate.
func TestAdminCredentialWritersTakeTurns(t *testing.T) {
	var logs bytes.Buffer // written under the handler's lock; read after the writers end
	dir := t.TempDir()
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("a test passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Options{DataDir: dir, Listen: "127.0.0.1:0", PasswordFile: pass,
		Init: ca.InitOptions{Name: "Test", TrustDomain: "test.internal"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.Serve(ctx)
	})
	if err := s.operators.EnsureBootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		for _, f := range []string{AdminCertFile, AdminKeyFile} {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.ensureAdminCredential(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n := strings.Count(logs.String(), "admin credential issued"); n != round+1 {
			t.Fatalf("round %d: %d admin credentials issued in all, want one per round", round, n)
		}
		certPEM, err := os.ReadFile(filepath.Join(dir, AdminCertFile))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := os.ReadFile(filepath.Join(dir, AdminKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(certPEM)
		if block == nil {
			t.Fatal("no certificate")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key, err := keys.ParsePrivateKeyPEM(keyPEM, []byte("a test passphrase"))
		if err != nil {
			t.Fatal(err)
		}
		if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			t.Fatalf("round %d: the admin key is not its certificate's", round)
		}
	}
}

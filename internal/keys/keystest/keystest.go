// Package keystest is the conformance suite every keys.Backend must pass —
// a backend's tests call Run with a constructor for a fresh, empty backend —
// and Memory, the in-memory keystore other packages' tests run on.
package keystest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
)

// Run checks the Backend contract against backends built by newBackend. Each
// subtest gets its own backend.
func Run(t *testing.T, newBackend func(t *testing.T) keys.Backend) {
	t.Helper()
	ctx := context.Background()

	for _, kt := range keys.AllKeyTypes() {
		t.Run("create and load "+string(kt), func(t *testing.T) {
			b := newBackend(t)
			created, ref, err := b.Create(ctx, "ca-"+string(kt), kt)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if got, err := keys.TypeOf(created.Public()); err != nil || got != kt {
				t.Fatalf("created key has type %q, %v; want %q", got, err, kt)
			}
			checkSigns(t, created)
			loaded, err := b.Load(ctx, ref)
			if err != nil {
				t.Fatalf("Load(%q): %v", ref, err)
			}
			if !samePublic(created.Public(), loaded.Public()) {
				t.Fatal("loaded key differs from created key")
			}
			checkSigns(t, loaded)
		})
	}

	t.Run("create refuses an existing name", func(t *testing.T) {
		b := newBackend(t)
		if _, _, err := b.Create(ctx, "dup", keys.ECP256); err != nil {
			t.Fatalf("first Create: %v", err)
		}
		if _, _, err := b.Create(ctx, "dup", keys.ECP256); err == nil {
			t.Fatal("second Create with the same name succeeded")
		}
	})

	t.Run("load of an unknown reference fails", func(t *testing.T) {
		b := newBackend(t)
		if _, err := b.Load(ctx, "no-such-key"); err == nil {
			t.Fatal("Load of an unknown reference succeeded")
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		b := newBackend(t)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := b.Create(cancelled, "cancelled", keys.ECP256); err == nil {
			t.Fatal("Create with a cancelled context succeeded")
		}
	})

	t.Run("concurrent loads", func(t *testing.T) {
		b := newBackend(t)
		created, ref, err := b.Create(ctx, "shared", keys.ECP256)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				s, err := b.Load(ctx, ref)
				if err != nil {
					errs <- err
					return
				}
				if !samePublic(created.Public(), s.Public()) {
					errs <- fmt.Errorf("loaded key differs")
					return
				}
				digest := sha256.Sum256([]byte("concurrent"))
				if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func checkSigns(t *testing.T, s crypto.Signer) {
	t.Helper()
	msg := []byte("keystest message")
	digest := sha256.Sum256(msg)
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Fatalf("ecdsa signature does not verify (err %v)", err)
		}
	case *rsa.PublicKey:
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
			t.Fatalf("rsa signature does not verify (err %v)", err)
		}
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil || !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("ed25519 signature does not verify (err %v)", err)
		}
	default:
		t.Fatalf("unexpected public key type %T", pub)
	}
}

func samePublic(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

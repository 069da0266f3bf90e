//go:build cgo

package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
)

// Keys generated on a SoftHSM token sign certificates, are found again by
// a fresh router (a restarted server), and are never generated twice.
func TestPKCS11GenerateOpenSign(t *testing.T) {
	tok := keystest.SoftHSM(t, "meshpki")
	ctx := context.Background()
	r := newRouter(t)
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.RSA2048, keys.RSA3072, keys.RSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			uri := tok.URI("ca-" + string(kt))
			s, ref, err := r.CreateAt(ctx, uri, kt, true)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := keys.TypeOf(s.Public()); err != nil || got != kt {
				t.Fatalf("generated %s, want %s (%v)", got, kt, err)
			}
			selfSign(t, s)
			if _, _, err := r.CreateAt(ctx, uri, kt, true); !errors.Is(err, fs.ErrExist) {
				t.Errorf("generated twice at one object: %v", err)
			}
			again := newRouter(t)
			loaded, err := again.Load(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
				t.Fatal("a fresh router found another key")
			}
			selfSign(t, loaded)
			if used, _, err := again.CreateAt(ctx, uri, kt, false); err != nil || used == nil {
				t.Errorf("use the existing key: %v", err)
			}
		})
	}
	if _, _, err := r.CreateAt(ctx, tok.URI("ca-"+string(keys.ECP256)), keys.ECP384, false); err == nil || !strings.Contains(err.Error(), "is ec-p256, not ec-p384") {
		t.Errorf("an existing key of another type: %v", err)
	}
	if _, _, err := r.CreateAt(ctx, tok.URI("ed"), keys.Ed25519, true); err == nil || !strings.Contains(err.Error(), "cannot be kept on a PKCS#11 token") {
		t.Errorf("ed25519: %v", err)
	}
}

// Each way a PKCS#11 key URI can be wrong is a clear error naming it.
func TestPKCS11Refusals(t *testing.T) {
	tok := keystest.SoftHSM(t, "meshpki")
	ctx := context.Background()
	r := newRouter(t)
	if _, _, err := r.CreateAt(ctx, tok.URI("present"), keys.ECP256, true); err != nil {
		t.Fatal(err)
	}
	// PKCS#11 logs in once per process and token: a PIN is checked when no
	// session of this process is open on the token, so each case below
	// closes its router before the next.
	r.Close()
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrongPIN, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loosePIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(loosePIN, []byte(tok.PIN), 0o644); err != nil {
		t.Fatal(err)
	}
	module := "?module-path=" + keystest.SoftHSMModule + "&pin-source=file:" + tok.PINFile
	for uri, want := range map[string]string{
		strings.Replace(tok.URI("present"), tok.PINFile, wrongPIN, 1):                                               "the PIN is wrong",
		strings.Replace(tok.URI("present"), tok.PINFile, loosePIN, 1):                                               "readable by others",
		"pkcs11:token=absent;object=present" + module:                                                               "there is no token \"absent\"",
		"pkcs11:token=" + tok.Label + ";object=absent" + module:                                                     "no key pair at pkcs11:token=" + tok.Label + ";object=absent",
		"pkcs11:token=" + tok.Label + ";object=x?module-path=/nonexistent/module.so&pin-source=file:" + tok.PINFile: "cannot load the PKCS#11 module",
		"pkcs11:token=" + tok.Label + ";object=x?module-path=" + keystest.SoftHSMModule + "&pin-value=1234":         "would put the PIN in ca.json",
		"pkcs11:token=" + tok.Label + ";object=x":                                                                   "needs module-path",
		"pkcs11:object=x" + module:                                                                                  "choose the token",
		"pkcs11:token=" + tok.Label + "" + module:                                                                   "must name the key",
		"pkcs11:token=" + tok.Label + ";object=x;colour=blue" + module:                                              "not one meshpki knows",
	} {
		rr := keys.NewRouter(keys.NewFastFileBackend(t.TempDir(), []byte("file passphrase")))
		_, err := rr.Load(ctx, uri)
		rr.Close()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant …%s…", uri, err, want)
		}
		if err != nil && strings.Contains(err.Error(), tok.PIN) {
			t.Errorf("the error shows the PIN: %v", err)
		}
	}
	if _, err := newRouter(t).Load(ctx, "pkcs11:token="+tok.Label+";object=absent"+module); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key is not fs.ErrNotExist: %v", err)
	}
}

// When the module is finalized under a running signer (as when the HSM's
// library is unloaded), signatures fail cleanly while the token cannot be
// reached, and succeed again once it can, with no restart.
//
// The module must really be finalized, which the other tests keep SoftHSM
// from (see keystest.SoftHSM), so this test runs alone in a child process.
func TestPKCS11TokenGoneAndBack(t *testing.T) {
	if os.Getenv(keystest.SoftHSMFinalizeEnv) == "" {
		keystest.SoftHSM(t, "probe") // skips, or fails under CI, without softhsm2
		cmd := exec.Command(os.Args[0], "-test.run=^TestPKCS11TokenGoneAndBack$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), keystest.SoftHSMFinalizeEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPKCS11TokenGoneAndBack") {
			t.Fatalf("in a child process: %v\n%s", err, out)
		}
		return
	}
	tok := keystest.SoftHSM(t, "meshpki")
	ctx := context.Background()
	r := newRouter(t)
	s, _, err := r.CreateAt(ctx, tok.URI("int-1"), keys.ECP256, true)
	if err != nil {
		t.Fatal(err)
	}
	selfSign(t, s)
	r.Close() // C_Finalize: every session of the signer is gone
	// The token leaves (its directory moves away; the module itself still
	// loads, as when an HSM drops off the network) and comes back.
	dirs, err := filepath.Glob(filepath.Join(tok.Dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	dirs = slices.DeleteFunc(dirs, func(d string) bool {
		object, err := os.ReadFile(filepath.Join(d, "token.object"))
		return err != nil || !bytes.Contains(object, []byte(tok.Label+" "))
	})
	if len(dirs) != 1 {
		t.Fatalf("the token's directory: %v", dirs)
	}
	away := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dirs[0], away); err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	if _, err := s.Sign(rand.Reader, digest, crypto.SHA256); err == nil || !strings.Contains(err.Error(), "the HSM did not sign") ||
		!strings.Contains(err.Error(), `there is no token "`+tok.Label+`"`) {
		t.Fatalf("signing with the token gone: %v", err)
	}
	if err := os.Rename(away, dirs[0]); err != nil {
		t.Fatal(err)
	}
	selfSign(t, s)
}

// The token MAC key on a token: HMAC-SHA256 computed inside it, the same
// for a fresh router (a restarted server), never generated twice.
func TestPKCS11MAC(t *testing.T) {
	tok := keystest.SoftHSM(t, "mac")
	testMACKey(t, tok.URI("token"))
}

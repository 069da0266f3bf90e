package certfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

func newSet(t *testing.T, cn string) Set {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return Set{Key: key, Chain: []*x509.Certificate{cert}, CA: []*x509.Certificate{cert}}
}

func layout(t *testing.T) Layout {
	t.Helper()
	root := t.TempDir()
	return Layout{Dir: filepath.Join(root, "nginx", "tls"), Cert: "tls.crt", Key: "tls.key", CA: "ca.crt", Combined: "web.pem",
		PKCS12: "web.p12", PKCS12Password: "changeit", CertMode: 0o644, KeyMode: 0o600, AllowedRoots: []string{root}}
}

func subject(t *testing.T, l Layout) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(l.Dir, l.Cert), filepath.Join(l.Dir, l.Key))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	return leaf.Subject.CommonName
}

// Each write switches every file at once; the previous set stays for a
// rollback; modes are as asked; the keystore opens with its password.
func TestWriteSwitchesAndRollsBack(t *testing.T) {
	l := layout(t)
	if err := Write(l, newSet(t, "one"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := subject(t, l); got != "one" {
		t.Fatalf("after the first write: %s", got)
	}
	for name, mode := range map[string]os.FileMode{"tls.crt": 0o644, "ca.crt": 0o644, "tls.key": 0o600, "web.pem": 0o600, "web.p12": 0o600} {
		st, err := os.Stat(filepath.Join(l.Dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", name, st.Mode(), err, mode)
		}
	}
	p12, _ := os.ReadFile(filepath.Join(l.Dir, "web.p12"))
	if _, cert, err := pkcs12.Decode(p12, "changeit"); err != nil || cert.Subject.CommonName != "one" {
		t.Errorf("PKCS#12: %v", err)
	}
	if err := Write(l, newSet(t, "two"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := subject(t, l); got != "two" {
		t.Fatalf("after the second write: %s", got)
	}
	if err := Write(l, newSet(t, "three"), time.Now()); err != nil {
		t.Fatal(err)
	}
	sets, _ := filepath.Glob(filepath.Join(l.Dir, "..20*"))
	if len(sets) != 2 {
		t.Errorf("sets kept: %v, want the current and the previous", sets)
	}
	if err := Rollback(l); err != nil {
		t.Fatal(err)
	}
	if got := subject(t, l); got != "two" {
		t.Fatalf("after rollback: %s", got)
	}
}

// At every instant the set DIR shows is whole: a reader resolving ..data
// once and loading the pair from it, while sets are switched, never finds
// a key that does not match its certificate, nor a short file; and one
// reading the combined file (key and chain in one) never does either. (A
// reader opening tls.crt and then tls.key can straddle a switch: services
// are reloaded by the hooks, after it.)
func TestReadersNeverSeeAMismatchedPair(t *testing.T) {
	l := layout(t)
	if err := Write(l, newSet(t, "first"), time.Now()); err != nil {
		t.Fatal(err)
	}
	sets := make([]Set, 30)
	for i := range sets {
		sets[i] = newSet(t, "n")
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var loads, bad atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				set, err := os.Readlink(filepath.Join(l.Dir, dataLink))
				if err != nil {
					bad.Add(1)
					continue
				}
				dir := filepath.Join(l.Dir, set)
				_, err = tls.LoadX509KeyPair(filepath.Join(dir, l.Cert), filepath.Join(dir, l.Key))
				if err != nil && !errors.Is(err, fs.ErrNotExist) { // a set two switches old is removed
					bad.Add(1)
				}
				if combined, err := os.ReadFile(filepath.Join(l.Dir, l.Combined)); err == nil {
					if _, err := tls.X509KeyPair(combined, combined); err != nil {
						bad.Add(1)
					}
				}
				loads.Add(1)
			}
		})
	}
	for _, s := range sets {
		if err := Write(l, s, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d loads failed", bad.Load(), loads.Load())
	}
}

// Refused, with nothing written: a directory outside the allowed roots,
// one reached through a symlink, a file name that is a symlink elsewhere,
// a key that does not match its certificate.
func TestRefusals(t *testing.T) {
	l := layout(t)
	outside := l
	outside.Dir = filepath.Join(t.TempDir(), "elsewhere")
	if err := Write(outside, newSet(t, "x"), time.Now()); !errors.Is(err, ErrOutsideRoots) {
		t.Errorf("outside the roots: %v", err)
	}
	escape := l
	escape.Dir = filepath.Join(l.AllowedRoots[0], "..", "x")
	if err := Write(escape, newSet(t, "x"), time.Now()); !errors.Is(err, ErrOutsideRoots) {
		t.Errorf("a path that climbs out: %v", err)
	}

	target := t.TempDir()
	linked := l
	if err := os.Symlink(target, filepath.Join(l.AllowedRoots[0], "link")); err != nil {
		t.Fatal(err)
	}
	linked.Dir = filepath.Join(l.AllowedRoots[0], "link", "tls")
	if err := Write(linked, newSet(t, "x"), time.Now()); !errors.Is(err, ErrSymlink) {
		t.Errorf("through a symlinked directory: %v", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("wrote through the symlink: %v", entries)
	}

	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(l.Dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if err := Write(l, newSet(t, "x"), time.Now()); !errors.Is(err, ErrSymlink) {
		t.Errorf("a key file that is a symlink: %v", err)
	}
	if data, _ := os.ReadFile(secret); string(data) != "keep me" {
		t.Error("the symlink's target was changed")
	}
	os.Remove(filepath.Join(l.Dir, "tls.key"))

	s := newSet(t, "x")
	s.Key = newSet(t, "y").Key
	if err := Write(l, s, time.Now()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a mismatched pair: %v", err)
	}
	if entries, _ := os.ReadDir(l.Dir); len(entries) != 0 {
		t.Errorf("a refused write left %v", entries)
	}
}

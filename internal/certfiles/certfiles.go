// Package certfiles owns putting an issued certificate on disk for a
// service to read: its key, certificate chain, CA and the other formats a
// manifest asks for, switched in all at once so that no reader ever sees a
// half-written file or a key that does not match its certificate, with the
// previous set kept for rollback, and with the paths checked so that a
// manifest cannot write outside the directories it was granted or through
// a symlink someone else placed.
//
// Layout, as Kubernetes' atomic writer of Secret volumes: the files of one
// issuance are written into a new directory DIR/..2026-12-07T10-00-00.000
// (each synced), DIR/..data is a symlink to it, replaced by a rename, and
// each name a service reads (DIR/tls.crt) is a symlink to ..data/tls.crt.
// The set before is kept as DIR/..previous for Rollback; older sets are
// removed.
package certfiles

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/meshpki/meshpki/internal/keys"
)

// Names inside DIR that certfiles manages.
const (
	dataLink     = "..data"
	previousLink = "..previous"
	setPrefix    = ".."
)

// Set is what one issuance writes.
type Set struct {
	Key   crypto.Signer
	Chain []*x509.Certificate // the leaf first
	CA    []*x509.Certificate // the roots a relying party trusts (ca.crt)
	// KeyEncoding is "PKCS8" or "PKCS1" (RSA keys only; others are
	// always PKCS#8, as cert-manager writes them).
	KeyEncoding string
}

// Layout says where and how: the directory, the file names (empty: not
// written), and the owner, group and modes.
type Layout struct {
	Dir                     string
	Cert, Key, CA, Combined string
	PKCS12, JKS             string
	PKCS12Password          string // the keystores' password (from a file the manifest names)
	Owner, Group            string
	CertMode, KeyMode       os.FileMode
	AllowedRoots            []string // Dir must be inside one of them
	// Now dates keystore entries (nil: time.Now).
	Now func() time.Time
}

func (l *Layout) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

// Errors callers branch on.
var (
	// ErrOutsideRoots is a directory outside every allowed root.
	ErrOutsideRoots = errors.New("certfiles: the directory is outside the allowed roots")
	// ErrSymlink is a path through a symlink certfiles did not make.
	ErrSymlink = errors.New("certfiles: refusing to write through a symlink")
)

// Check refuses, as Write would, a directory outside the allowed roots or
// reached through a symlink.
func (l Layout) Check() error { return l.checkDir() }

// checkDir refuses a directory outside the allowed roots, or reached
// through a symlink (any component, the roots' own ancestors aside).
func (l *Layout) checkDir() error {
	dir := filepath.Clean(l.Dir)
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("certfiles: %s is not an absolute path", dir)
	}
	var root string
	for _, r := range l.AllowedRoots {
		r = filepath.Clean(r)
		if rel, err := filepath.Rel(r, dir); err == nil && filepath.IsLocal(rel) || dir == r {
			root = r
			break
		}
	}
	if root == "" {
		return fmt.Errorf("%w: %s (allowed: %s)", ErrOutsideRoots, dir, strings.Join(l.AllowedRoots, ", "))
	}
	// Every component from the root down must be a real directory.
	rel, _ := filepath.Rel(root, dir)
	p := root
	for _, part := range append([]string{""}, strings.Split(rel, string(filepath.Separator))...) {
		if part != "" && part != "." {
			p = filepath.Join(p, part)
		}
		st, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // made below, by us
		}
		if err != nil {
			return fmt.Errorf("certfiles: %w", err)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s", ErrSymlink, p)
		}
		if !st.IsDir() {
			return fmt.Errorf("certfiles: %s is not a directory", p)
		}
	}
	return nil
}

// files returns name → content of the set in this layout.
func (l *Layout) files(s Set) (map[string][]byte, map[string]os.FileMode, error) {
	if s.Key == nil || len(s.Chain) == 0 {
		return nil, nil, errors.New("certfiles: a set needs a key and a certificate")
	}
	if !publicEqual(s.Key.Public(), s.Chain[0].PublicKey) {
		return nil, nil, errors.New("certfiles: the key does not match the certificate")
	}
	keyPEM, err := encodeKey(s.Key, s.KeyEncoding)
	if err != nil {
		return nil, nil, err
	}
	var chain, ca []byte
	for _, c := range s.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, c := range s.CA {
		ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	out, modes := map[string][]byte{}, map[string]os.FileMode{}
	add := func(name string, data []byte, mode os.FileMode) {
		if name != "" {
			out[name], modes[name] = data, mode
		}
	}
	add(l.Key, keyPEM, l.KeyMode)
	add(l.Cert, chain, l.CertMode)
	add(l.CA, ca, l.CertMode)
	add(l.Combined, append(append(slices.Clone(keyPEM), '\n'), chain...), l.KeyMode)
	if l.PKCS12 != "" {
		p12, err := pkcs12.Modern2023.Encode(s.Key, s.Chain[0], s.Chain[1:], l.PKCS12Password)
		if err != nil {
			return nil, nil, fmt.Errorf("certfiles: PKCS#12: %w", err)
		}
		add(l.PKCS12, p12, l.KeyMode)
	}
	if l.JKS != "" {
		jks, err := encodeJKS(s.Key, s.Chain, "certificate", l.PKCS12Password, l.now())
		if err != nil {
			return nil, nil, fmt.Errorf("certfiles: JKS: %w", err)
		}
		add(l.JKS, jks, l.KeyMode)
	}
	for name := range out {
		if !filepath.IsLocal(name) || strings.ContainsRune(name, filepath.Separator) || strings.HasPrefix(name, setPrefix) {
			return nil, nil, fmt.Errorf("certfiles: %q is not a file name certfiles may write", name)
		}
	}
	return out, modes, nil
}

func encodeKey(key crypto.Signer, encoding string) ([]byte, error) {
	if rk, ok := key.(*rsa.PrivateKey); ok && encoding == "PKCS1" {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), nil
	}
	return keys.MarshalPrivateKeyPEM(key)
}

// Write switches DIR to the set s: every file written and synced in a new
// set directory, then ..data renamed to point at it. The set it replaces
// becomes ..previous; the one before that is removed. Nothing a reader can
// see changes until the rename.
func Write(l Layout, s Set, now time.Time) error {
	if err := l.checkDir(); err != nil {
		return err
	}
	files, modes, err := l.files(s)
	if err != nil {
		return err
	}
	uid, gid, err := l.ids()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return fmt.Errorf("certfiles: %w", err)
	}
	for name := range files {
		if err := checkVisible(l.Dir, name); err != nil {
			return err
		}
	}
	set := setPrefix + now.UTC().Format("2006-01-02T15-04-05.000000000")
	setDir := filepath.Join(l.Dir, set)
	if err := os.Mkdir(setDir, 0o755); err != nil {
		return fmt.Errorf("certfiles: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(setDir)
		}
	}()
	for name, data := range files {
		if err := writeSynced(filepath.Join(setDir, name), data, modes[name], uid, gid); err != nil {
			return err
		}
	}
	if err := keys.SyncDir(setDir); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(l.Dir, dataLink))
	if err := swapLink(l.Dir, dataLink, set); err != nil {
		return err
	}
	done = true
	for name := range files {
		if err := ensureLink(l.Dir, name); err != nil {
			return err
		}
	}
	if old != "" && old != set {
		oldPrev, _ := os.Readlink(filepath.Join(l.Dir, previousLink))
		if err := swapLink(l.Dir, previousLink, old); err != nil {
			return err
		}
		if oldPrev != "" && oldPrev != old && oldPrev != set && strings.HasPrefix(oldPrev, setPrefix) {
			os.RemoveAll(filepath.Join(l.Dir, oldPrev))
		}
	}
	return keys.SyncDir(l.Dir)
}

// Rollback switches DIR back to the set before the current one (which
// becomes ..previous in turn).
func Rollback(l Layout) error {
	if err := l.checkDir(); err != nil {
		return err
	}
	prev, err := os.Readlink(filepath.Join(l.Dir, previousLink))
	if err != nil {
		return fmt.Errorf("certfiles: no previous set to go back to in %s", l.Dir)
	}
	cur, err := os.Readlink(filepath.Join(l.Dir, dataLink))
	if err != nil {
		return fmt.Errorf("certfiles: %s holds no current set", l.Dir)
	}
	if err := swapLink(l.Dir, dataLink, prev); err != nil {
		return err
	}
	if err := swapLink(l.Dir, previousLink, cur); err != nil {
		return err
	}
	return keys.SyncDir(l.Dir)
}

// checkVisible refuses to take over DIR/name when it is a symlink that is
// not certfiles' own (to ..data/name) or a directory.
func checkVisible(dir, name string) error {
	p := filepath.Join(dir, name)
	st, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("certfiles: %w", err)
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil || target != filepath.Join(dataLink, name) {
			return fmt.Errorf("%w: %s points to %s", ErrSymlink, p, target)
		}
	case st.IsDir():
		return fmt.Errorf("certfiles: %s is a directory", p)
	}
	return nil
}

// ensureLink makes DIR/name the symlink ..data/name (replacing a regular
// file of that name, as a certificate written before certfiles managed the
// directory).
func ensureLink(dir, name string) error {
	want := filepath.Join(dataLink, name)
	if t, err := os.Readlink(filepath.Join(dir, name)); err == nil && t == want {
		return nil
	}
	return swapLink(dir, name, want)
}

// swapLink points DIR/name at target with a rename over it.
func swapLink(dir, name, target string) error {
	tmp := filepath.Join(dir, ".tmp-"+strings.TrimLeft(name, ".")+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("certfiles: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certfiles: %w", err)
	}
	return nil
}

func writeSynced(path string, data []byte, mode os.FileMode, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("certfiles: %w", err)
	}
	if uid != -1 || gid != -1 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("certfiles: write %s: %w", path, err)
	}
	return nil
}

// ids resolves Owner and Group (names or numbers; -1 keeps the process's).
func (l *Layout) ids() (int, int, error) {
	uid, gid := -1, -1
	if l.Owner != "" {
		if n, err := strconv.Atoi(l.Owner); err == nil {
			uid = n
		} else if u, err := user.Lookup(l.Owner); err == nil {
			uid, _ = strconv.Atoi(u.Uid)
		} else {
			return 0, 0, fmt.Errorf("certfiles: owner %q: %w", l.Owner, err)
		}
	}
	if l.Group != "" {
		if n, err := strconv.Atoi(l.Group); err == nil {
			gid = n
		} else if g, err := user.LookupGroup(l.Group); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		} else {
			return 0, 0, fmt.Errorf("certfiles: group %q: %w", l.Group, err)
		}
	}
	return uid, gid, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

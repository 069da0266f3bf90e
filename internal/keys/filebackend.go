package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// refPrefix starts every reference FileBackend hands out.
const refPrefix = "file:"

// maxNameLen bounds key and secret names.
const maxNameLen = 128

// Bounds on CreateSecret sizes, in bytes.
const (
	minSecretSize = 16
	maxSecretSize = 4096
)

// FileBackend keeps keys as encrypted PKCS#8 files (see EncryptPEM) and
// secrets as passphrase-encrypted PEM files (EncryptSecret) in one
// directory. Files are written with mode 0600 and the
// directory is created with mode 0700. Decrypted keys and secrets are cached
// by reference, so only the first Load of a reference pays for scrypt.
// A FileBackend is safe for concurrent use.
type FileBackend struct {
	dir        string
	passphrase []byte
	scrypt     scryptParams // of secrets
	keyScrypt  scryptParams // of keys (openssl's limit, see pkcs8Scrypt)

	mu      sync.Mutex
	signers map[string]*cacheEntry[crypto.Signer]
	secrets map[string]*cacheEntry[[]byte]
}

// cacheEntry is one cached decryption. done is closed when value and err are
// set; until then, other callers wait for the first one.
type cacheEntry[T any] struct {
	done  chan struct{}
	value T
	err   error
}

var _ Keystore = (*FileBackend)(nil)

// NewFileBackend returns a backend storing files in dir, encrypted under
// passphrase. The passphrase is copied.
func NewFileBackend(dir string, passphrase []byte) *FileBackend {
	return &FileBackend{
		dir:        dir,
		passphrase: append([]byte(nil), passphrase...),
		scrypt:     defaultScrypt,
		keyScrypt:  pkcs8Scrypt,
		signers:    make(map[string]*cacheEntry[crypto.Signer]),
		secrets:    make(map[string]*cacheEntry[[]byte]),
	}
}

// Create generates a key of type kt and writes it, encrypted, to
// dir/<name>.key. It refuses to overwrite an existing file (the error wraps
// fs.ErrExist). name must match [a-z0-9][a-z0-9._-]*. The returned reference
// is "file:<name>.key".
func (b *FileBackend) Create(ctx context.Context, name string, kt KeyType) (crypto.Signer, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	signer, err := kt.Generate()
	if err != nil {
		return nil, "", err
	}
	data, err := encryptKeyPEM(signer, b.passphrase, b.keyScrypt)
	if err != nil {
		return nil, "", err
	}
	file := name + ".key"
	if err := WriteFileExclusive(filepath.Join(b.dir, file), data, 0o600); err != nil {
		return nil, "", err
	}
	ref := refPrefix + file
	b.mu.Lock()
	b.signers[ref] = readyEntry(signer)
	b.mu.Unlock()
	return signer, ref, nil
}

// Ref returns "file:<name>.key", the reference Create returns for name.
func (b *FileBackend) Ref(name string) string { return refPrefix + name + ".key" }

// Load returns the signer for ref, a "file:<path>" reference with a path
// relative to the backend's directory. Absolute paths and paths leaving the
// directory are refused. A missing file yields an error wrapping
// fs.ErrNotExist; a wrong passphrase one wrapping ErrBadPassphrase.
func (b *FileBackend) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	return load(ctx, b, b.signers, ref, func(data []byte) (crypto.Signer, error) {
		return ParsePrivateKeyPEM(data, b.passphrase)
	})
}

// CreateSecret generates size random bytes and writes them, encrypted, to
// dir/<name>.secret, refusing to overwrite an existing file. It returns the
// secret and the reference "file:<name>.secret".
func (b *FileBackend) CreateSecret(ctx context.Context, name string, size int) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	if size < minSecretSize || size > maxSecretSize {
		return nil, "", fmt.Errorf("keys: secret size %d must be from %d to %d bytes", size, minSecretSize, maxSecretSize)
	}
	secret := make([]byte, size)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", fmt.Errorf("keys: read random secret: %w", err)
	}
	data, err := seal(encryptedSecretBlock, secret, b.passphrase, b.scrypt)
	if err != nil {
		return nil, "", err
	}
	file := name + ".secret"
	if err := WriteFileExclusive(filepath.Join(b.dir, file), data, 0o600); err != nil {
		return nil, "", err
	}
	ref := refPrefix + file
	b.mu.Lock()
	b.secrets[ref] = readyEntry(append([]byte(nil), secret...))
	b.mu.Unlock()
	return secret, ref, nil
}

// LoadSecret returns the secret for a reference returned by CreateSecret.
// Each call returns a fresh copy the caller may modify or wipe.
func (b *FileBackend) LoadSecret(ctx context.Context, ref string) ([]byte, error) {
	secret, err := load(ctx, b, b.secrets, ref, func(data []byte) ([]byte, error) {
		return DecryptSecret(data, b.passphrase)
	})
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), secret...), nil
}

func readyEntry[T any](value T) *cacheEntry[T] {
	e := &cacheEntry[T]{done: make(chan struct{}), value: value}
	close(e.done)
	return e
}

// load returns the cached value for ref, or reads and decodes its file once
// while concurrent callers for the same ref wait. Failures are not cached.
func load[T any](ctx context.Context, b *FileBackend, cache map[string]*cacheEntry[T], ref string, decode func([]byte) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	path, err := b.resolve(ref)
	if err != nil {
		return zero, err
	}
	b.mu.Lock()
	e, ok := cache[ref]
	if !ok {
		e = &cacheEntry[T]{done: make(chan struct{})}
		cache[ref] = e
	}
	b.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			if e.err != nil {
				return zero, e.err
			}
			return e.value, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}

	e.value, e.err = readAndDecode(path, decode)
	if e.err != nil {
		b.mu.Lock()
		delete(cache, ref)
		b.mu.Unlock()
	}
	close(e.done)
	return e.value, e.err
}

func readAndDecode[T any](path string, decode func([]byte) (T, error)) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("keys: %w", err)
	}
	value, err := decode(data)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("keys: load %s: %w", path, err)
	}
	return value, nil
}

// resolve turns a reference into a path inside the backend's directory.
func (b *FileBackend) resolve(ref string) (string, error) {
	rel, ok := strings.CutPrefix(ref, refPrefix)
	if !ok {
		return "", fmt.Errorf("keys: reference %q is not a file backend reference (file:<name>)", ref)
	}
	if rel == "" || filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.Contains(rel, `\`) || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("keys: reference %q must name a file inside the key directory", ref)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return "", fmt.Errorf("keys: reference %q must name a file inside the key directory", ref)
		}
	}
	return filepath.Join(b.dir, filepath.FromSlash(rel)), nil
}

// checkName enforces [a-z0-9][a-z0-9._-]* with a length limit.
func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("keys: name must be 1 to %d characters", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("keys: name %q must match [a-z0-9][a-z0-9._-]*", name)
		}
	}
	return nil
}

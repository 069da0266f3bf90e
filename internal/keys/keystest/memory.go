package keystest

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"sync"

	"github.com/meshpki/meshpki/internal/keys"
)

// Memory is a keys.Keystore that keeps keys and secrets in memory, for
// tests: it stands where a PKCS#11 or KMS keystore will, and spares tests
// the scrypt cost of keys.FileBackend. Two users sharing one Memory behave
// like two processes sharing one keystore. The zero value is not usable;
// call NewMemory.
type Memory struct {
	mu      sync.Mutex
	signers map[string]crypto.Signer
	secrets map[string][]byte
	created []string
}

var _ keys.Keystore = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{signers: map[string]crypto.Signer{}, secrets: map[string][]byte{}}
}

// memName is the names Memory accepts, as keys.FileBackend does.
var memName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Ref returns the reference of the key named name.
func (m *Memory) Ref(name string) string { return "mem:" + name + ".key" }

// Create generates a key of type kt under name; fs.ErrExist when there is
// one.
func (m *Memory) Create(ctx context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if !memName.MatchString(name) {
		return nil, "", fmt.Errorf("mem: bad key name %q", name)
	}
	signer, err := kt.Generate()
	if err != nil {
		return nil, "", err
	}
	ref := m.Ref(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.signers[ref]; ok {
		return nil, "", fmt.Errorf("mem: %s: %w", ref, fs.ErrExist)
	}
	m.signers[ref] = signer
	m.created = append(m.created, name)
	return signer, ref, nil
}

// Load returns the key ref names; fs.ErrNotExist when there is none.
func (m *Memory) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.signers[ref]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("mem: %s: %w", ref, fs.ErrNotExist)
}

// CreateSecret generates size random bytes under name; fs.ErrExist when
// there are some.
func (m *Memory) CreateSecret(ctx context.Context, name string, size int) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if !memName.MatchString(name) {
		return nil, "", fmt.Errorf("mem: bad secret name %q", name)
	}
	secret := make([]byte, size)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	ref := "mem:" + name + ".secret"
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.secrets[ref]; ok {
		return nil, "", fmt.Errorf("mem: %s: %w", ref, fs.ErrExist)
	}
	m.secrets[ref] = secret
	m.created = append(m.created, name+" (secret)")
	return slices.Clone(secret), ref, nil
}

// LoadSecret returns the secret ref names; fs.ErrNotExist when there is
// none.
func (m *Memory) LoadSecret(ctx context.Context, ref string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.secrets[ref]; ok {
		return slices.Clone(s), nil
	}
	return nil, fmt.Errorf("mem: %s: %w", ref, fs.ErrNotExist)
}

// Created returns the names of the keys, and of the secrets (as
// "NAME (secret)"), created so far, in order.
func (m *Memory) Created() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.created)
}

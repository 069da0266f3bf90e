package server_test

import (
	"context"
	"crypto"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
)

// memKeystore keeps keys in memory: a keystore that is not the file one,
// standing where a PKCS#11 or KMS backend will.
type memKeystore struct {
	mu      sync.Mutex
	signers map[string]crypto.Signer
	secrets map[string][]byte
	created []string
}

func (m *memKeystore) Ref(name string) string { return "mem:" + name }

func (m *memKeystore) Create(_ context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ref := m.Ref(name)
	if _, ok := m.signers[ref]; ok {
		return nil, "", fmt.Errorf("mem: %s: %w", ref, fs.ErrExist)
	}
	k, err := kt.Generate()
	if err != nil {
		return nil, "", err
	}
	m.signers[ref] = k
	m.created = append(m.created, name)
	return k, ref, nil
}

func (m *memKeystore) Load(_ context.Context, ref string) (crypto.Signer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.signers[ref]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("mem: %s: %w", ref, fs.ErrNotExist)
}

func (m *memKeystore) CreateSecret(_ context.Context, name string, size int) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ref := "mem:" + name + ".secret"
	if _, ok := m.secrets[ref]; ok {
		return nil, "", fmt.Errorf("mem: %s: %w", ref, fs.ErrExist)
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	m.secrets[ref] = b
	m.created = append(m.created, name+" (secret)")
	return b, ref, nil
}

func (m *memKeystore) LoadSecret(_ context.Context, ref string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.secrets[ref]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("mem: %s: %w", ref, fs.ErrNotExist)
}

// Every key the server holds comes through Options.Keystore: started on a
// keystore that is not the file one, the server initialises, serves TLS
// and admin requests, and has written no key file of its own.
func TestEveryServerKeyComesFromTheKeystore(t *testing.T) {
	ks := &memKeystore{signers: map[string]crypto.Signer{}, secrets: map[string][]byte{}}
	in := servertest.Start(t, servertest.Options{Keystore: func(string, []byte) (keys.Keystore, error) { return ks, nil }})

	resp, err := in.Admin.Get(in.URL + "/v1/provisioners")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin request over the server's TLS: %s", resp.Status)
	}
	ks.mu.Lock()
	created := slices.Clone(ks.created)
	ks.mu.Unlock()
	for _, want := range []string{"root", "token (secret)", "jwt-svid", "audit-checkpoint"} {
		if !slices.Contains(created, want) {
			t.Errorf("keystore was not asked for %q; it made %v", want, created)
		}
	}
	entries, err := os.ReadDir(filepath.Join(in.DataDir, "ca", "keys"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the server wrote %s outside its keystore", e.Name())
	}
}

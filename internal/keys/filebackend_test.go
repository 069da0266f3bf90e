package keys

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestBackend(dir string) *FileBackend {
	b := NewFileBackend(dir, testPassphrase)
	b.scrypt, b.keyScrypt = testScrypt, testScrypt
	return b
}

func TestFileBackendWritesEncryptedPrivateFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "keys")
	created, ref, err := newTestBackend(dir).Create(ctx, "root-ca", ECP256)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "file:root-ca.key" {
		t.Errorf("ref = %q, want file:root-ca.key", ref)
	}
	path := filepath.Join(dir, "root-ca.key")
	assertMode(t, dir, 0o700)
	assertMode(t, path, 0o600)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "-----BEGIN "+pkcs8Block+"-----") {
		t.Fatalf("key file is not encrypted:\n%.60s", data)
	}

	// A fresh backend (a restarted server) reads the file back.
	loaded, err := newTestBackend(dir).Load(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(created.Public(), loaded.Public()) {
		t.Fatal("reloaded key differs")
	}
	// With the wrong passphrase it fails as such.
	wrong := NewFileBackend(dir, []byte("wrong"))
	if _, err := wrong.Load(ctx, ref); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: err = %v", err)
	}
}

func TestFileBackendCreateRefusesExistingFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := newTestBackend(dir).Create(ctx, "ca", ECP256)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "ca.key")); string(got) != "precious" {
		t.Fatal("existing key file was overwritten")
	}
}

func TestFileBackendLoadIsCached(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, ref, err := newTestBackend(dir).Create(ctx, "ca", Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBackend(dir)
	first, err := b.Load(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// With the file gone, only the cache can answer.
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	second, err := b.Load(ctx, ref)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if !samePublic(first.Public(), second.Public()) {
		t.Fatal("second Load returned another key")
	}
	if _, err := newTestBackend(dir).Load(ctx, ref); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("uncached Load of a removed file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestFileBackendFailedLoadIsNotCached(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newTestBackend(dir)
	if _, err := b.Load(ctx, "file:late.key"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if _, _, err := newTestBackend(dir).Create(ctx, "late", ECP256); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, "file:late.key"); err != nil {
		t.Fatalf("Load after the file appeared: %v", err)
	}
}

func TestFileBackendRejectsBadRefs(t *testing.T) {
	b := newTestBackend(t.TempDir())
	for _, ref := range []string{
		"",
		"ca.key",
		"file:",
		"file:/etc/shadow",
		"file:../ca.key",
		"file:sub/../../ca.key",
		"file:sub/../ca.key",
		"file:..",
		`file:..\ca.key`,
		"pkcs11:token=ca",
	} {
		if _, err := b.Load(context.Background(), ref); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(%q): err = %v, want a reference error", ref, err)
		}
	}
}

func TestFileBackendRejectsBadNames(t *testing.T) {
	b := newTestBackend(t.TempDir())
	for _, name := range []string{"", "CA", "-ca", ".ca", "_ca", "a/b", `a\b`, "..", "ca key", "ca\x00", strings.Repeat("a", 129)} {
		if _, _, err := b.Create(context.Background(), name, ECP256); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
		if _, _, err := b.CreateSecret(context.Background(), name, 32); err == nil {
			t.Errorf("CreateSecret(%q) succeeded", name)
		}
	}
	for _, name := range []string{"ca", "0", "root-ca.2026_v1"} {
		if err := checkName(name); err != nil {
			t.Errorf("checkName(%q): %v", name, err)
		}
	}
}

func TestFileBackendSecrets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	secret, ref, err := newTestBackend(dir).CreateSecret(ctx, "token-mac", 32)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "file:token-mac.secret" || len(secret) != 32 {
		t.Fatalf("ref %q, %d bytes", ref, len(secret))
	}
	assertMode(t, filepath.Join(dir, "token-mac.secret"), 0o600)
	data, _ := os.ReadFile(filepath.Join(dir, "token-mac.secret"))
	if !strings.Contains(string(data), encryptedSecretBlock) {
		t.Fatal("secret file is not encrypted")
	}

	b := newTestBackend(dir)
	got, err := b.LoadSecret(ctx, ref)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("LoadSecret = %x, %v", got, err)
	}
	clear(got) // the caller wiping its copy must not affect the cache
	again, err := b.LoadSecret(ctx, ref)
	if err != nil || string(again) != string(secret) {
		t.Fatalf("second LoadSecret = %x, %v", again, err)
	}

	if _, _, err := b.CreateSecret(ctx, "token-mac", 32); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateSecret over an existing file: err = %v", err)
	}
	for _, size := range []int{0, 8, 1 << 20} {
		if _, _, err := b.CreateSecret(ctx, "sized", size); err == nil {
			t.Errorf("CreateSecret of %d bytes succeeded", size)
		}
	}
	if _, err := b.LoadSecret(ctx, "file:../token-mac.secret"); err == nil {
		t.Error("LoadSecret accepted a path outside the directory")
	}
}

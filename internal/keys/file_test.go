package keys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", path, got, want)
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %v, want %v (a temporary file left behind?)", dir, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s holds %v, want %v", dir, got, want)
		}
	}
}

func TestWriteFileCreatesPrivateDirsAndFile(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "ca.key")
	if err := WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Join(root, "a"), 0o700)
	assertMode(t, filepath.Join(root, "a", "b"), 0o700)

	if err := WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatalf("replacing: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "two" {
		t.Errorf("content = %q, want %q", got, "two")
	}
	assertOnlyFiles(t, filepath.Join(root, "a", "b"), "ca.key")
}

func TestWriteFileHonoursPermExactly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := WriteFile(path, []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o644)
}

func TestWriteFileExclusiveRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	if err := WriteFileExclusive(path, []byte("original"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	err := WriteFileExclusive(path, []byte("replacement"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "original" {
		t.Errorf("content = %q, the original was overwritten", got)
	}
	assertOnlyFiles(t, dir, "ca.key")
}

func TestWriteFileExclusiveDirectFallback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	if err := writeExclusiveDirect(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	if err := writeExclusiveDirect(path, []byte("y"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
}

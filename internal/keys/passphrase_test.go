package keys

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTestFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func TestResolvePassphraseOrder(t *testing.T) {
	dataDir := t.TempDir()
	writeTestFile(t, filepath.Join(dataDir, "secrets", "password"), "from-data-dir\n", 0o600)
	passwordFile := filepath.Join(t.TempDir(), "pw")
	writeTestFile(t, passwordFile, "from-file\n", 0o600)

	t.Setenv(PassphraseEnv, "from-env")
	for _, tc := range []struct {
		name, passwordFile, env, want string
	}{
		{"password file wins", passwordFile, "from-env", "from-file"},
		{"then the environment", "", "from-env", "from-env"},
		{"then the data directory", "", "", "from-data-dir"},
	} {
		if tc.env == "" {
			os.Unsetenv(PassphraseEnv)
		} else {
			t.Setenv(PassphraseEnv, tc.env)
		}
		got, generated, err := ResolvePassphrase(dataDir, tc.passwordFile, true)
		if err != nil || string(got) != tc.want || generated != "" {
			t.Errorf("%s: got %q, generated %q, err %v; want %q", tc.name, got, generated, err, tc.want)
		}
	}
}

func TestResolvePassphraseTrimsOneNewline(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	os.Unsetenv(PassphraseEnv)
	dir := t.TempDir()
	for content, want := range map[string]string{
		"pw":       "pw",
		"pw\n":     "pw",
		"pw\r\n":   "pw",
		"pw\n\n":   "pw\n",
		" pw \n":   " pw ",
		"p\nw\n":   "p\nw",
		"pw\r\n\n": "pw\r\n",
	} {
		path := filepath.Join(dir, "pw")
		writeTestFile(t, path, content, 0o600)
		got, _, err := ResolvePassphrase("", path, false)
		if err != nil || string(got) != want {
			t.Errorf("file %q: got %q, %v; want %q", content, got, err, want)
		}
	}
}

func TestResolvePassphraseRefusals(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	os.Unsetenv(PassphraseEnv)
	dir := t.TempDir()

	empty := filepath.Join(dir, "empty")
	writeTestFile(t, empty, "\n", 0o600)
	if _, _, err := ResolvePassphrase("", empty, true); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password file: err = %v", err)
	}
	if _, _, err := ResolvePassphrase("", filepath.Join(dir, "missing"), true); err == nil {
		t.Error("missing password file accepted")
	}

	t.Setenv(PassphraseEnv, "")
	if _, _, err := ResolvePassphrase(dir, "", true); err == nil {
		t.Error("empty MESHPKI_PASSWORD accepted")
	}
	os.Unsetenv(PassphraseEnv)

	loose := t.TempDir()
	loosePath := filepath.Join(loose, "secrets", "password")
	writeTestFile(t, loosePath, "pw\n", 0o644)
	_, _, err := ResolvePassphrase(loose, "", true)
	if err == nil || !strings.Contains(err.Error(), loosePath) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable password file: err = %v", err)
	}
	os.Chmod(loosePath, 0o640)
	if _, _, err := ResolvePassphrase(loose, "", true); err == nil {
		t.Error("group-readable password file accepted")
	}

	none := t.TempDir()
	_, _, err = ResolvePassphrase(none, "", false)
	want := "keys: no passphrase: pass --password-file, set MESHPKI_PASSWORD, or keep one in " + filepath.Join(none, "secrets", "password")
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(none, "secrets")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a secrets directory was created without allowGenerate")
	}
}

func TestResolvePassphraseGenerates(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	os.Unsetenv(PassphraseEnv)
	dataDir := filepath.Join(t.TempDir(), "data")
	pass, generated, err := ResolvePassphrase(dataDir, "", true)
	if err != nil {
		t.Fatal(err)
	}
	wantPath := filepath.Join(dataDir, "secrets", "password")
	if generated != wantPath {
		t.Fatalf("generatedPath = %q, want %q", generated, wantPath)
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(pass))
	if err != nil || len(raw) != 32 {
		t.Fatalf("passphrase %d chars is not 32 base64url bytes (%v)", len(pass), err)
	}
	assertMode(t, wantPath, 0o600)
	assertMode(t, filepath.Join(dataDir, "secrets"), 0o700)

	again, generated, err := ResolvePassphrase(dataDir, "", true)
	if err != nil || generated != "" || string(again) != string(pass) {
		t.Fatalf("second call: %q, generated %q, err %v", again, generated, err)
	}
}

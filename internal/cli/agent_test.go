package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestJoinTokenFile: a token file is read; a file removed once the node
// attested is no token, not an error (systemd units name it always); a
// file holding anything but one token is refused; giving the token twice
// is a usage error.
func TestJoinTokenFile(t *testing.T) {
	t.Setenv(JoinTokenEnv, "")
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("tok.en.value\n"), 0o600)
	os.WriteFile(bad, []byte("two tokens\n"), 0o600)
	if tok, err := resolveJoinToken("", good, false); err != nil || tok != "tok.en.value" {
		t.Errorf("good file: %q %v", tok, err)
	}
	if tok, err := resolveJoinToken("", filepath.Join(dir, "removed"), false); err != nil || tok != "" {
		t.Errorf("removed file: %q %v", tok, err)
	}
	if _, err := resolveJoinToken("", bad, false); err == nil {
		t.Error("a file with two tokens was accepted")
	}
	if _, err := resolveJoinToken("x", good, true); err == nil {
		t.Error("two ways at once was accepted")
	}
}

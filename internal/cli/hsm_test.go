//go:build cgo

package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/servertest"
)

// A CA whose root, intermediates and server keys live on a SoftHSM token:
// init, issue, rotate, restart. Its data directory holds no CA private key,
// openssl verifies what it issues, and the audit log names the backend and
// key of every issuer change. A wrong PIN or a missing token is a clear
// error and writes nothing.
func TestCAOnPKCS11Token(t *testing.T) {
	clearConnectEnv(t)
	tok := keystest.SoftHSM(t, "ca")
	base := filepath.Join(t.TempDir(), "hsm")
	dir := filepath.Join(base, "data")
	pw := filepath.Join(base, "password") // where servertest keeps it
	writeTestFile(t, pw, []byte(servertest.Password+"\n"), 0o600)
	serverKeys := strings.Replace(tok.URI("x"), ";object=x", "", 1)

	// Refused first: nothing is written.
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	writeTestFile(t, wrongPIN, []byte("0000\n"), 0o600)
	for name, c := range map[string]struct{ uri, want string }{
		"wrong PIN":     {strings.Replace(tok.URI("root"), tok.PINFile, wrongPIN, 1), "the PIN is wrong"},
		"missing token": {strings.Replace(tok.URI("root"), "token="+tok.Label, "token=nowhere", 1), `there is no token "nowhere"`},
	} {
		code, _, errOut := invokeCLI(t, "", "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw,
			"--root-key-uri", c.uri, "--intermediate-key-uri", tok.URI("int-1"), "--generate")
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
			t.Errorf("%s: exit %d, %q", name, code, errOut)
		}
		if _, err := os.Stat(filepath.Join(dir, "ca")); !os.IsNotExist(err) {
			t.Fatalf("%s: a failed init left %s (%v)", name, filepath.Join(dir, "ca"), err)
		}
	}

	rootKey, intKey := tok.URI("root"), tok.URI("int-1")
	caOnKeyService(t, dir, pw, rootKey, intKey, tok.URI("token"), serverKeys, "pkcs11", "pkcs11:token="+tok.Label+";object=default-2", "pkcs11:token="+tok.Label+";object=root")
	if tail, _ := mustRun(t, "audit", "tail", "--data", dir, "-n", "100", "--json"); strings.Contains(tail, tok.PINFile) {
		t.Error("the audit log shows the PIN file")
	}
}

// An offline root whose key is in an HSM slot: root.json names the key,
// the root directory holds no key file, and sign-intermediate signs with
// the token.
func TestOfflineRootInHSM(t *testing.T) {
	clearConnectEnv(t)
	tok := keystest.SoftHSM(t, "root")
	base := filepath.Join(t.TempDir(), "offline")
	dir := filepath.Join(base, "data")
	rootDir := filepath.Join(t.TempDir(), "root")
	pw := filepath.Join(base, "password")
	writeTestFile(t, pw, []byte(servertest.Password+"\n"), 0o600)
	mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw,
		"--offline-root", rootDir, "--root-key-uri", tok.URI("root"), "--jwt-svid-key-uri", tok.URI("jwt"), "--generate")
	if files, _ := filepath.Glob(filepath.Join(rootDir, "keys", "*")); len(files) != 0 {
		t.Errorf("the root directory holds key files %v", files)
	}
	if data, _ := os.ReadFile(filepath.Join(rootDir, "root.json")); !strings.Contains(string(data), "pkcs11:token="+tok.Label+";object=root") {
		t.Fatalf("root.json: %s", data)
	}
	csr := filepath.Join(t.TempDir(), "default-2.csr")
	mustRun(t, "ca", "rotate-intermediate", "--data", dir, "--password-file", pw, "--csr", csr)
	crt := filepath.Join(t.TempDir(), "default-2.crt")
	mustRun(t, "ca", "sign-intermediate", "--root", rootDir, "--csr", csr, "--out", crt, "--password-file", pw)
	out, _ := mustRun(t, "ca", "import-intermediate", "--data", dir, "--password-file", pw, "--cert", crt)
	if !strings.Contains(out, "generation 2") {
		t.Fatalf("import: %s", out)
	}
	in := servertest.Start(t, servertest.Options{DataDir: dir})
	mustRun(t, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--data", dir, "--password-file", pw)
	cert := issueThrough(t, in, pw, "api")
	if insp, _ := mustRun(t, "cert", "inspect", cert); !strings.Contains(insp, `Intermediate CA (default\, 2)`) {
		t.Errorf("issued by: %s", insp)
	}
	// The JWT-SVID key was generated on the token at the server's start.
	if _, err := os.Stat(filepath.Join(dir, "ca", "keys", "jwt-svid.key")); !os.IsNotExist(err) {
		t.Errorf("the JWT-SVID key is a file: %v", err)
	}
	r := keys.OpenKeystore(t.TempDir(), []byte("x"))
	defer r.Close()
	if _, err := r.Load(context.Background(), tok.URI("jwt")); err != nil {
		t.Errorf("the JWT-SVID key on the token: %v", err)
	}
}

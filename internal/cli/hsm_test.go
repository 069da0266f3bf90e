//go:build cgo

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

	mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw,
		"--root-key-uri", tok.URI("root"), "--intermediate-key-uri", tok.URI("int-1"), "--server-key-uri", serverKeys, "--generate")
	var cfg struct {
		Root       struct{ Key string }
		Issuers    []struct{ Key string }
		ServerKeys string `json:"server_keys"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "ca", "ca.json"))
	if err != nil || json.Unmarshal(data, &cfg) != nil {
		t.Fatal(err)
	}
	if cfg.Root.Key != tok.URI("root") || len(cfg.Issuers) != 1 || cfg.Issuers[0].Key != tok.URI("int-1") || cfg.ServerKeys != serverKeys {
		t.Fatalf("ca.json: %s", data)
	}

	in := servertest.Start(t, servertest.Options{DataDir: dir})
	roots := filepath.Join(dir, "ca", "root.crt")
	mustRun(t, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--data", dir, "--password-file", pw)
	issue := func(name string) string {
		t.Helper()
		tokOut, _ := mustRun(t, "token", "create", name, "--san", name+".example.internal", "--provisioner", "web", "--data", dir, "--password-file", pw)
		out := t.TempDir()
		mustRun(t, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tokOut), "--ca-url", in.URL, "--root", roots, "--out", out)
		cert := filepath.Join(out, name+".crt")
		opensslVerifyFile(t, in, cert)
		return cert
	}
	issue("api")

	// Rotation makes generation 2 on the same token, named after it.
	out, _ := mustRun(t, "ca", "rotate-intermediate", "--data", dir, "--password-file", pw)
	if !strings.Contains(out, "generation 2") {
		t.Fatalf("rotate: %s", out)
	}
	data, _ = os.ReadFile(filepath.Join(dir, "ca", "ca.json"))
	if !strings.Contains(string(data), "pkcs11:token="+tok.Label+";object=default-2?module-path=") {
		t.Fatalf("generation 2's key: %s", data)
	}
	in.Stop()
	in = servertest.Start(t, servertest.Options{DataDir: dir})
	cert := issue("web")
	if insp, _ := mustRun(t, "cert", "inspect", cert); !strings.Contains(insp, `Intermediate CA (default\, 2)`) {
		t.Errorf("issued after the restart by: %s", insp)
	}

	// No CA private key, and no key of the server's own, is in a file.
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), "PRIVATE KEY-----") && path != filepath.Join(dir, "secrets", "admin.key") {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "ca", "keys", "*")); len(files) != 1 || filepath.Base(files[0]) != "token.secret" {
		t.Errorf("DIR/ca/keys holds %v, want the token MAC secret alone", files)
	}

	tail, _ := mustRun(t, "audit", "tail", "--data", dir, "-n", "100", "--json")
	for _, want := range []string{`"root_key_backend":"pkcs11"`, `"key":"pkcs11:token=` + tok.Label + `;object=default-2"`, `"key_backend":"pkcs11"`,
		`"signed_by":"pkcs11:token=` + tok.Label + `;object=root"`} {
		if !strings.Contains(strings.ReplaceAll(tail, " ", ""), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
	if strings.Contains(tail, tok.PINFile) {
		t.Error("the audit log shows the PIN file")
	}
}

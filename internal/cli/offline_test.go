package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/servertest"
)

// A CA with its root offline: the data directory never holds the root's
// key, the server runs and issues with the intermediate alone, and a new
// generation is prepared on the server, signed where the root is, and
// imported; what it signs verifies with openssl.
func TestOfflineRoot(t *testing.T) {
	clearConnectEnv(t)
	base := filepath.Join(t.TempDir(), "offline")
	dir := filepath.Join(base, "data")
	rootDir := filepath.Join(t.TempDir(), "air-gapped", "root")
	pw := filepath.Join(base, "password") // where servertest keeps it
	writeTestFile(t, pw, []byte(servertest.Password+"\n"), 0o600)

	out, _ := mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw, "--offline-root", rootDir)
	if !strings.Contains(out, "offline root:") {
		t.Fatalf("ca init: %s", out)
	}
	if _, err := os.Stat(filepath.Join(rootDir, "keys", "root.key")); err != nil {
		t.Fatalf("the offline root's key: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "ca", "keys", "*"))
	for _, f := range files {
		if filepath.Base(f) == "root.key" {
			t.Fatal("the data directory holds the root's key")
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, "ca", "ca.json"))
	if !strings.Contains(string(data), `"root_offline": true`) || strings.Contains(string(data), rootDir) {
		t.Fatalf("ca.json: %s", data)
	}

	in := servertest.Start(t, servertest.Options{DataDir: dir})
	roots := filepath.Join(dir, "ca", "root.crt")
	mustRun(t, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--data", dir, "--password-file", pw)
	issue := func(name string) string { return issueThrough(t, in, pw, name) }
	issue("api")

	// What needs the root here says how to do it where the root is.
	for _, args := range [][]string{
		{"ca", "rotate-intermediate", "--data", dir, "--password-file", pw},
		{"ca", "add-issuer", "payments", "--data", dir, "--password-file", pw},
	} {
		code, _, errOut := invokeCLI(t, "", args...)
		if code != 1 || !strings.Contains(errOut, "the root is offline") || !strings.Contains(errOut, "--csr") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}

	csr := filepath.Join(t.TempDir(), "default-2.csr")
	out, _ = mustRun(t, "ca", "rotate-intermediate", "--data", dir, "--password-file", pw, "--csr", csr)
	if !strings.Contains(out, "generation 2") || !strings.Contains(out, "sign-intermediate") {
		t.Fatalf("rotate --csr: %s", out)
	}
	crt := filepath.Join(t.TempDir(), "default-2.crt")
	// Refused where the root is: a request that is not one, or is altered.
	bad := filepath.Join(t.TempDir(), "bad.csr")
	b, _ := os.ReadFile(csr)
	writeTestFile(t, bad, []byte(strings.Replace(string(b), "MI", "Mi", 1)), 0o644)
	if code, _, errOut := invokeCLI(t, "", "ca", "sign-intermediate", "--root", rootDir, "--csr", bad, "--out", crt, "--password-file", pw); code != 1 || errOut == "" {
		t.Errorf("an altered request: exit %d %q", code, errOut)
	}
	if code, _, errOut := invokeCLI(t, "", "ca", "sign-intermediate", "--root", dir, "--csr", csr, "--out", crt, "--password-file", pw); code != 1 || !strings.Contains(errOut, "holds no offline root") {
		t.Errorf("the data directory as the root: exit %d %q", code, errOut)
	}
	out, _ = mustRun(t, "ca", "sign-intermediate", "--root", rootDir, "--csr", csr, "--out", crt, "--password-file", pw)
	if !strings.Contains(out, "Intermediate CA (default, 2)") {
		t.Fatalf("sign-intermediate: %s", out)
	}
	// A certificate for a key that was not prepared is refused.
	if code, _, errOut := invokeCLI(t, "", "ca", "import-intermediate", "--data", dir, "--password-file", pw, "--cert", roots); code != 1 || !strings.Contains(errOut, "no pending generation has this certificate's key") {
		t.Errorf("the root as an intermediate: exit %d %q", code, errOut)
	}
	out, _ = mustRun(t, "ca", "import-intermediate", "--data", dir, "--password-file", pw, "--cert", crt)
	if !strings.Contains(out, "generation 2") {
		t.Fatalf("import: %s", out)
	}
	if code, _, errOut := invokeCLI(t, "", "ca", "import-intermediate", "--data", dir, "--password-file", pw, "--cert", crt); code != 1 || !strings.Contains(errOut, "no pending generation") {
		t.Errorf("imported twice: exit %d %q", code, errOut)
	}
	// The running server signs with generation 2 within its reload.
	deadline := 0
	for {
		cert := issue("web" + string(rune('a'+deadline)))
		insp, _ := mustRun(t, "cert", "inspect", cert)
		if strings.Contains(insp, `Intermediate CA (default\, 2)`) {
			break
		}
		if deadline++; deadline > 20 {
			t.Fatalf("still issuing from: %s", insp)
		}
	}
	tail, _ := mustRun(t, "audit", "tail", "--data", dir, "-n", "50", "--json")
	if !strings.Contains(strings.ReplaceAll(tail, " ", ""), `"signed_by":"offlineroot"`) {
		t.Errorf("the audit log does not say the offline root signed:\n%s", tail)
	}
}

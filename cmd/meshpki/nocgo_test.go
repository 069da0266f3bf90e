package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The binary built without cgo (as the darwin and windows cross-builds
// are) runs, and a PKCS#11 key URI gets a one-line error saying it needs
// the cgo build; nothing is written.
func TestNoCgoBuildExplainsPKCS11(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshpki")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "data")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("passphrase for the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw,
		"--root-key-uri", "pkcs11:token=t;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/nonexistent", "--generate")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PKCS#11 needs the cgo build of meshpki") {
		t.Fatalf("ca init with a pkcs11 URI: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca")); !os.IsNotExist(err) {
		t.Errorf("the failed init left %s", filepath.Join(dir, "ca"))
	}
}

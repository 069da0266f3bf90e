package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/servertest"
)

// TestAdminCommands: 'admin add' writes an operator's credential with the
// key encrypted; the operator's role bounds what its credential does (an
// operator mints tokens for its provisioner, not for another, and cannot
// add provisioners: exit 1 with "forbidden"); 'admin list' shows roles;
// the bootstrap admin is retired once a second admin exists, after which
// --data alone no longer carries a credential and the second admin's does.
func TestAdminCommands(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	run := func(args ...string) (string, string) { t.Helper(); return mustRun(t, append(args, data...)...) }
	run("provisioner", "add", "token", "web", "--allow-dns", "*.example.internal")
	run("provisioner", "add", "token", "other", "--allow-dns", "*.other.internal")

	dir := t.TempDir()
	pass := filepath.Join(dir, "alice.pass")
	if err := os.WriteFile(pass, []byte("alice passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := run("admin", "add", "alice", "--role", "operator", "--provisioner", "web", "--out", filepath.Join(dir, "alice"), "--key-password-file", pass)
	if !strings.Contains(out, "added operator alice (operator)") {
		t.Fatalf("admin add: %s", out)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "alice", "alice.key"))
	if err != nil || !strings.Contains(string(keyPEM), "ENCRYPTED PRIVATE KEY") {
		t.Fatalf("alice.key is not encrypted: %v %.40q", err, keyPEM)
	}
	for _, f := range []string{"alice.key", "alice.crt"} {
		if fi, err := os.Stat(filepath.Join(dir, "alice", f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	alice := []string{"--cert", filepath.Join(dir, "alice", "alice.crt"), "--key", filepath.Join(dir, "alice", "alice.key"), "--password-file", pass,
		"--ca-url", in.URL, "--root", filepath.Join(in.DataDir, "ca", "root.crt")}
	if code, out, errOut := invokeCLI(t, "", append([]string{"token", "create", "a.example.internal", "--san", "a.example.internal", "--provisioner", "web"}, alice...)...); code != 0 {
		t.Fatalf("alice mints a token for web: exit %d %s %s", code, out, errOut)
	}
	for _, refused := range [][]string{
		{"token", "create", "a.other.internal", "--san", "a.other.internal", "--provisioner", "other"},
		{"provisioner", "add", "token", "mine", "--allow-dns", "*.example.internal"},
		{"admin", "list"},
	} {
		if code, _, errOut := invokeCLI(t, "", append(refused, alice...)...); code != 1 || !strings.Contains(errOut, "forbidden") && !strings.Contains(errOut, "does not") {
			t.Errorf("%v as alice: exit %d %s", refused, code, errOut)
		}
	}

	// A second admin; the bootstrap admin retired.
	if out, _ = run("admin", "add", "root2", "--role", "admin", "--out", filepath.Join(dir, "root2"), "--key-password-file", pass); !strings.Contains(out, "added operator root2 (admin)") {
		t.Fatalf("admin add root2: %s", out)
	}
	root2 := []string{"--cert", filepath.Join(dir, "root2", "root2.crt"), "--key", filepath.Join(dir, "root2", "root2.key"), "--password-file", pass,
		"--ca-url", in.URL, "--root", filepath.Join(in.DataDir, "ca", "root.crt")}
	out, _ = mustRun(t, append([]string{"admin", "list", "--json"}, root2...)...)
	var ops []client.Operator
	if err := json.Unmarshal([]byte(out), &ops); err != nil || len(ops) != 3 || ops[0].Name != "alice" || ops[0].Provisioners[0] != "web" || ops[1].Name != "bootstrap" {
		t.Fatalf("admin list --json: %v %s", err, out)
	}
	out, _ = mustRun(t, append([]string{"admin", "revoke", "bootstrap"}, root2...)...)
	if !strings.Contains(out, "retired operator bootstrap; revoked 1 certificate\n") {
		t.Fatalf("admin revoke bootstrap: %s", out)
	}
	for _, f := range []string{"admin.crt", "admin.key"} {
		if _, err := os.Stat(filepath.Join(in.DataDir, "secrets", f)); err == nil {
			t.Errorf("secrets/%s is still there after the bootstrap admin was retired", f)
		}
	}
	if code, _, errOut := invokeCLI(t, "", append([]string{"provisioner", "list"}, data...)...); code == 0 {
		t.Errorf("the retired bootstrap credential still works: %s", errOut)
	}
	out, _ = mustRun(t, append([]string{"admin", "list"}, root2...)...)
	if !strings.Contains(out, "bootstrap") || !strings.Contains(out, "retired") || !regexp.MustCompile(`(?m)^alice +operator +web +`).MatchString(out) {
		t.Errorf("admin list:\n%s", out)
	}
	if code, _, errOut := invokeCLI(t, "", append([]string{"admin", "revoke", "root2"}, root2...)...); code != 1 || !strings.Contains(errOut, "last active admin") {
		t.Errorf("retiring the last admin: exit %d %s", code, errOut)
	}
	if code, _, errOut := invokeCLI(t, "", append([]string{"admin", "add", "bob", "--role", "root", "--out", dir, "--key-password-file", pass}, root2...)...); code != 1 || !strings.Contains(errOut, "role") {
		t.Errorf("an unknown role: exit %d %s", code, errOut)
	}
	if code, _, _ := invokeCLI(t, "", append([]string{"admin", "add", "bob", "--role", "viewer"}, root2...)...); code != 2 {
		t.Errorf("admin add without --out: exit %d, want 2", code)
	}
}

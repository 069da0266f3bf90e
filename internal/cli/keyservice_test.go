package cli

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/servertest"
)

// caOnKeyService makes a CA whose root, intermediate, token MAC and server
// keys are at the URIs given, then issues, rotates and restarts it. Its data directory
// holds no private key but the bootstrap admin's, openssl verifies what it
// issues, and the audit log names each key and its backend: rotated is the
// redacted URI generation 2's key must have (a prefix of it, for a KMS
// key whose id KMS chooses), rootKey the root's.
func caOnKeyService(t *testing.T, dir, pw, rootURI, intURI, tokenURI, serverKeys, backend, rotated, rootKey string) {
	t.Helper()
	mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw,
		"--root-key-uri", rootURI, "--intermediate-key-uri", intURI, "--token-key-uri", tokenURI, "--server-key-uri", serverKeys, "--generate")
	var cfg struct {
		Root       struct{ Key string }
		Issuers    []struct{ Key string }
		ServerKeys string `json:"server_keys"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "ca", "ca.json"))
	if err != nil || json.Unmarshal(data, &cfg) != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Root.Key, backend+":") || len(cfg.Issuers) != 1 || !strings.HasPrefix(cfg.Issuers[0].Key, backend+":") || cfg.ServerKeys != serverKeys {
		t.Fatalf("ca.json: %s", data)
	}

	in := servertest.Start(t, servertest.Options{DataDir: dir})
	mustRun(t, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--data", dir, "--password-file", pw)
	issue := func(name string) string { return issueThrough(t, in, pw, name) }
	issue("api")

	// Rotation makes generation 2 in the same token or account.
	out, _ := mustRun(t, "ca", "rotate-intermediate", "--data", dir, "--password-file", pw)
	if !strings.Contains(out, "generation 2") {
		t.Fatalf("rotate: %s", out)
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
	if files, _ := filepath.Glob(filepath.Join(dir, "ca", "keys", "*")); len(files) != 0 {
		t.Errorf("DIR/ca/keys holds %v, want nothing", files)
	}
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), "ENCRYPTED SECRET") {
				t.Errorf("%s holds a secret", path)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	tail, _ := mustRun(t, "audit", "tail", "--data", dir, "-n", "100", "--json")
	tail = strings.ReplaceAll(tail, " ", "")
	for _, want := range []string{`"root_key_backend":"` + backend + `"`, `"key":"` + rotated, `"key_backend":"` + backend + `"`,
		`"signed_by":"` + rootKey} {
		if !strings.Contains(tail, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
	if strings.Contains(tail, "endpoint=") || strings.Contains(tail, "pin-source") || strings.Contains(tail, "module-path") {
		t.Error("the audit log shows a key URI's query")
	}
}

// A CA whose keys are in AWS KMS (local-kms).
func TestCAOnAWSKMS(t *testing.T) {
	clearConnectEnv(t)
	endpoint := keystest.LocalKMS(t)
	base := filepath.Join(t.TempDir(), "kms")
	dir := filepath.Join(base, "data")
	pw := filepath.Join(base, "password") // where servertest keeps it
	writeTestFile(t, pw, []byte(servertest.Password+"\n"), 0o600)
	q := "?region=eu-west-1&endpoint=" + url.QueryEscape(endpoint)
	caOnKeyService(t, dir, pw, "awskms:///alias/acme-root"+q, "awskms:///alias/acme-int-1"+q, "awskms:///alias/acme-token"+q, "awskms:///alias/acme"+q, "awskms", "awskms:///", "awskms:///")
}

// issueThrough issues NAME.example.internal from the server in, with a
// token of provisioner "web" minted with the CLI, and checks it with
// openssl; it returns the certificate's file.
func issueThrough(t *testing.T, in *servertest.Instance, pw, name string) string {
	t.Helper()
	tokOut, _ := mustRun(t, "token", "create", name, "--san", name+".example.internal", "--provisioner", "web", "--data", in.DataDir, "--password-file", pw)
	out := t.TempDir()
	mustRun(t, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tokOut), "--ca-url", in.URL,
		"--root", filepath.Join(in.DataDir, "ca", "root.crt"), "--out", out)
	cert := filepath.Join(out, name+".crt")
	opensslVerifyFile(t, in, cert)
	return cert
}

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

func TestConnectFlagErrors(t *testing.T) {
	clearConnectEnv(t)
	pki := newTestPKI(t)
	emptyData := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{
			name:     "data dir without a running server",
			args:     []string{"cert", "list", "--data", emptyData},
			wantCode: 1,
			wantErr: "meshpki: no running server recorded in " + filepath.Join(emptyData, "server.json") +
				": start 'meshpki server --data " + emptyData + "' or pass --ca-url\n",
		},
		{
			name:     "no credential for an admin command",
			args:     []string{"provisioner", "list", "--ca-url", "https://127.0.0.1:1", "--root", pki.rootFile},
			wantCode: 2,
			wantErr:  "no credential: pass --data DIR on the CA host, or --cert FILE --key FILE",
		},
		{
			name:     "cert without key",
			args:     []string{"cert", "revoke", "5f0c", "--cert", "a.crt"},
			wantCode: 2,
			wantErr:  "--cert and --key go together",
		},
		{
			name:     "no CA URL",
			args:     []string{"cert", "issue", "web", "--san", "web.example.internal", "--token", "t", "--out", t.TempDir(), "--root", pki.rootFile},
			wantCode: 2,
			wantErr:  "which CA? pass --ca-url URL (or set MESHPKI_CA_URL), or --data DIR on the CA host",
		},
		{
			name:     "no root",
			args:     []string{"cert", "issue", "web", "--san", "web.example.internal", "--token", "t", "--out", t.TempDir(), "--ca-url", "https://127.0.0.1:1"},
			wantCode: 2,
			wantErr:  "which root to trust? pass --root FILE (or set MESHPKI_ROOT)",
		},
		{
			name:     "root file missing",
			args:     []string{"cert", "issue", "web", "--san", "web.example.internal", "--token", "t", "--out", t.TempDir(), "--ca-url", "https://127.0.0.1:1", "--root", filepath.Join(emptyData, "nope.crt")},
			wantCode: 1,
			wantErr:  "read root certificate: open " + filepath.Join(emptyData, "nope.crt"),
		},
		{
			name:     "renew needs the holder's cert",
			args:     []string{"cert", "renew", "--ca-url", "https://127.0.0.1:1", "--root", pki.rootFile},
			wantCode: 2,
			wantErr:  "--cert FILE and --key FILE are required",
		},
		{
			name:     "admin key files missing in data dir",
			args:     []string{"token", "create", "web", "--san", "a.example", "--data", emptyData, "--ca-url", "https://127.0.0.1:1", "--root", pki.rootFile},
			wantCode: 1,
			wantErr:  "read certificate: open " + filepath.Join(emptyData, "secrets", "admin.crt"),
		},
		{
			name:     "unknown flag is a usage error",
			args:     []string{"cert", "list", "--bogus"},
			wantCode: 2,
			wantErr:  "unknown flag: --bogus",
		},
		{
			name:     "unknown subcommand is a usage error",
			args:     []string{"cert", "bogus"},
			wantCode: 2,
			wantErr:  `unknown command "bogus" for "meshpki cert"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := invokeCLI(t, "", tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
		})
	}
}

func TestConnectResolvesFromDataDir(t *testing.T) {
	clearConnectEnv(t)
	pki := newTestPKI(t)
	dataDir := t.TempDir()
	writeTestFile(t, filepath.Join(dataDir, "server.json"), []byte(`{"url":"https://127.0.0.1:8443","pid":1}`), 0o644)
	writeTestFile(t, filepath.Join(dataDir, "ca", "root.crt"), pki.rootPEM, 0o644)
	adminKey := newTestKey(t)
	admin := pki.issue(t, adminKey.Public(), "admin", nil, nil, nil, time.Hour)
	encrypted, err := keys.EncryptPEM(adminKey, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dataDir, "secrets", "admin.crt"), pki.chainPEM(admin), 0o644)
	writeTestFile(t, filepath.Join(dataDir, "secrets", "admin.key"), encrypted, 0o600)
	writeTestFile(t, filepath.Join(dataDir, "secrets", "password"), []byte("correct horse\n"), 0o600)

	cf := &connectFlags{mode: credentialAdmin, dataDir: dataDir}
	got, err := cf.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got.url != "https://127.0.0.1:8443" || got.rootFile != filepath.Join(dataDir, "ca", "root.crt") {
		t.Errorf("resolved url %q, root %q", got.url, got.rootFile)
	}
	if got.cred == nil || got.cred.Leaf.Subject.CommonName != "admin" || len(got.cred.Certificate) != 2 {
		t.Fatalf("credential = %+v, want the admin's chain", got.cred)
	}

	// Flags, then the environment, win over the data directory.
	otherRoot := filepath.Join(t.TempDir(), "other-root.crt")
	writeTestFile(t, otherRoot, pki.rootPEM, 0o644)
	t.Setenv(envCAURL, "https://env.example.internal:8443")
	t.Setenv(envRoot, otherRoot)
	cf = &connectFlags{mode: credentialNone, dataDir: dataDir}
	if got, err = cf.resolve(); err != nil {
		t.Fatal(err)
	}
	if got.url != "https://env.example.internal:8443" || got.rootFile != otherRoot || got.cred != nil {
		t.Errorf("with env: url %q, root %q, cred %v", got.url, got.rootFile, got.cred)
	}
	cf = &connectFlags{mode: credentialNone, dataDir: dataDir, caURL: "https://flag.example.internal", rootFile: filepath.Join(dataDir, "ca", "root.crt")}
	if got, err = cf.resolve(); err != nil {
		t.Fatal(err)
	}
	if got.url != "https://flag.example.internal" || got.rootFile != filepath.Join(dataDir, "ca", "root.crt") {
		t.Errorf("with flags: url %q, root %q", got.url, got.rootFile)
	}
}

func TestConnectWrongPassphraseSaysSo(t *testing.T) {
	clearConnectEnv(t)
	pki := newTestPKI(t)
	dir := t.TempDir()
	key := newTestKey(t)
	leaf := pki.issue(t, key.Public(), "admin", nil, nil, nil, time.Hour)
	encrypted, err := keys.EncryptPEM(key, []byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "admin.crt")
	keyFile := filepath.Join(dir, "admin.key")
	writeTestFile(t, certFile, pki.chainPEM(leaf), 0o644)
	writeTestFile(t, keyFile, encrypted, 0o600)

	// Without any passphrase source.
	cf := &connectFlags{mode: credentialAdmin, caURL: "https://127.0.0.1:1", rootFile: pki.rootFile, certFile: certFile, keyFile: keyFile}
	if _, err := cf.resolve(); err == nil || !strings.Contains(err.Error(), "is encrypted") {
		t.Errorf("error = %v, want one saying the key is encrypted", err)
	}
	// With a wrong one.
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cf.passwordFile = pw
	if _, err := cf.resolve(); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("error = %v, want one saying the passphrase is wrong", err)
	}
}

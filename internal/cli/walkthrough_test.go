package cli

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := invokeCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("meshpki %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestREADMEWalkthroughAgainstRealServer runs the README's five-minute
// walkthrough, command by command, against a real server over HTTPS.
func TestREADMEWalkthroughAgainstRealServer(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	out := filepath.Join(t.TempDir(), "certs")

	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--deny-dns", "db.example.internal",
		"--allow-ip", "10.0.0.0/8", "--max-ttl", "168h"}, data...)...)
	listed, _ := mustRun(t, append([]string{"provisioner", "list"}, data...)...)
	if !strings.Contains(listed, "web") {
		t.Fatalf("provisioner list: %s", listed)
	}

	// policy check: deny exits 3 and names the rule; allow exits 0.
	code, stdout, _ := invokeCLI(t, "", append([]string{"policy", "check", "--provisioner", "web", "--san", "db.example.internal"}, data...)...)
	if code != 3 || !strings.Contains(stdout, "deny") || !strings.Contains(stdout, "deny_dns") {
		t.Fatalf("policy check deny: exit %d, %s", code, stdout)
	}
	mustRun(t, append([]string{"policy", "check", "--provisioner", "web", "--san", "api.example.internal"}, data...)...)

	tokOut, _ := mustRun(t, append([]string{"token", "create", "api", "--san", "api.example.internal", "--san", "10.0.0.7", "--provisioner", "web"}, data...)...)
	token := lastLine(tokOut)
	mustRun(t, "cert", "issue", "api", "--san", "api.example.internal", "--san", "10.0.0.7", "--token", token,
		"--ca-url", in.URL, "--root", root, "--out", out)
	certFile, keyFile := filepath.Join(out, "api.crt"), filepath.Join(out, "api.key")
	for _, f := range []string{certFile, keyFile} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, st.Mode(), err)
		}
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o700 {
		t.Errorf("out dir mode %v, want 0700", st.Mode().Perm())
	}
	insp, _ := mustRun(t, "cert", "inspect", certFile)
	if !strings.Contains(insp, "api.example.internal") || !strings.Contains(insp, "expires in") {
		t.Fatalf("inspect: %s", insp)
	}
	opensslVerifyFile(t, in, certFile)

	// The token is spent: using it again fails with one line and exit 1.
	code, _, errOut := invokeCLI(t, "", "cert", "issue", "api", "--san", "api.example.internal", "--token", token,
		"--ca-url", in.URL, "--root", root, "--out", t.TempDir())
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "already used") {
		t.Fatalf("replayed token: exit %d, %q", code, errOut)
	}

	// Renew with a new key, over mTLS with the current certificate.
	before := leafSerial(t, certFile)
	mustRun(t, "cert", "renew", "--cert", certFile, "--key", keyFile, "--ca-url", in.URL, "--root", root, "--rotate-key")
	after := leafSerial(t, certFile)
	if after == before {
		t.Fatal("renew did not replace the certificate")
	}
	opensslVerifyFile(t, in, certFile)

	listOut, _ := mustRun(t, append([]string{"cert", "list", "--name", "api.example.internal", "--json"}, data...)...)
	var page struct {
		Certificates []struct {
			Serial string `json:"serial"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(listOut), &page); err != nil || len(page.Certificates) != 2 {
		t.Fatalf("cert list --json: %v %s", err, listOut)
	}

	mustRun(t, append([]string{"cert", "revoke", after, "--reason", "keyCompromise"}, data...)...)
	code, _, errOut = invokeCLI(t, "", "cert", "renew", "--cert", certFile, "--key", keyFile, "--ca-url", in.URL, "--root", root)
	if code != 1 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("renew after revoke: exit %d, %q", code, errOut)
	}

	// Everything is in the audit log, and the chain verifies.
	tail, _ := mustRun(t, "audit", "tail", "--data", in.DataDir, "-n", "50")
	for _, want := range []string{"provisioner.added", "token.created", "certificate.issued", "certificate.renewed", "certificate.revoked", "request.denied"} {
		if !strings.Contains(tail, want) {
			t.Errorf("audit tail lacks %s:\n%s", want, tail)
		}
	}
	verified, _ := mustRun(t, "audit", "verify", "--data", in.DataDir)
	if !strings.Contains(verified, "audit log OK") {
		t.Fatalf("audit verify: %s", verified)
	}
	mustRun(t, append([]string{"provisioner", "remove", "web"}, data...)...)
}

// TestAuditVerifyNamesTamperedRecord edits the SQLite store behind the CA's
// back and expects verify to exit 1 naming the record.
func TestAuditVerifyNamesTamperedRecord(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	mustRun(t, append([]string{"token", "create", "a", "--san", "a.example.internal"}, data...)...)
	in.Stop()

	db := filepath.Join(in.DataDir, sqlstore.DefaultFile)
	out, err := exec.Command("sqlite3", db, "UPDATE audit_events SET actor = 'admin:forged' WHERE seq = 2").CombinedOutput()
	if err != nil {
		// No sqlite3 CLI: edit through database/sql instead.
		tamperWithSQL(t, db, "UPDATE audit_events SET actor = 'admin:forged' WHERE seq = 2")
	} else if len(out) > 0 {
		t.Logf("sqlite3: %s", out)
	}
	code, stdout, _ := invokeCLI(t, "", "audit", "verify", "--data", in.DataDir)
	if code != exitChecked || !strings.Contains(stdout, "record 2") || !strings.Contains(stdout, "edited") {
		t.Fatalf("audit verify after tampering: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = invokeCLI(t, "", "audit", "verify", "--data", in.DataDir, "--json")
	if code != exitChecked || !strings.Contains(stdout, `"seq": 2`) {
		t.Fatalf("audit verify --json: exit %d\n%s", code, stdout)
	}
}

// TestRotateIntermediateWhileServing rotates with the CLI while the server
// runs: new certificates come from the new intermediate, old ones still
// verify, and /intermediates.pem serves both.
func TestRotateIntermediateWhileServing(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	out := t.TempDir()
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	issue := func(name string) string {
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", name + ".example.internal"}, data...)...)
		mustRun(t, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tok), "--ca-url", in.URL, "--root", root, "--out", out)
		return filepath.Join(out, name+".crt")
	}
	oldCert := issue("old")
	rotated, _ := mustRun(t, "ca", "rotate-intermediate", "--data", in.DataDir, "--password-file", in.PasswordFile)
	if !strings.Contains(rotated, "generation 2") {
		t.Fatalf("rotate: %s", rotated)
	}
	// The server re-reads the hierarchy within its maintenance interval.
	var newCert string
	for range 50 {
		newCert = issue("new")
		if issuerSerialOf(t, newCert) != issuerSerialOf(t, oldCert) {
			break
		}
	}
	if issuerSerialOf(t, newCert) == issuerSerialOf(t, oldCert) {
		t.Fatal("the server kept signing with the old intermediate")
	}
	status, _ := mustRun(t, "ca", "status", "--data", in.DataDir, "--password-file", in.PasswordFile)
	if !strings.Contains(status, "generation 2") || !strings.Contains(status, "generation 1") {
		t.Errorf("ca status: %s", status)
	}
	// Both chains verify against the served intermediates.
	opensslVerifyFile(t, in, oldCert)
	opensslVerifyFile(t, in, newCert)
	certs, err := ca.ParseCertificatesPEM(getBody(t, in, "/intermediates.pem"))
	if err != nil || len(certs) != 2 {
		t.Fatalf("/intermediates.pem has %d certificates (%v), want 2", len(certs), err)
	}
	// The rotation, made by the CLI while the server writes too, is in the
	// audit log, whose chain is intact; so is the CA's creation.
	tail, _ := mustRun(t, "audit", "tail", "--data", in.DataDir, "-n", "1000", "--json")
	for _, want := range []string{`"ca.intermediate_rotated"`, `"generation":"2"`, `"ca.initialized"`} {
		if !strings.Contains(strings.ReplaceAll(tail, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("audit tail lacks %s", want)
		}
	}
	mustRun(t, "audit", "verify", "--data", in.DataDir)
}

// TestCAInitCreatesEncryptedHierarchy runs 'ca init' and checks what it wrote.
func TestCAInitCreatesEncryptedHierarchy(t *testing.T) {
	clearConnectEnv(t)
	dir := filepath.Join(t.TempDir(), "data")
	pw := filepath.Join(t.TempDir(), "pw")
	writeTestFile(t, pw, []byte("correct horse battery staple\n"), 0o600)
	stdout, _ := mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--key-type", "ec-p384", "--password-file", pw)
	if !strings.Contains(stdout, "fingerprint") {
		t.Fatalf("ca init: %s", stdout)
	}
	keyFiles, _ := filepath.Glob(filepath.Join(dir, "ca", "keys", "*"))
	if len(keyFiles) < 3 {
		t.Fatalf("key files: %v", keyFiles)
	}
	for _, f := range keyFiles {
		b, _ := os.ReadFile(f)
		st, _ := os.Stat(f)
		if st.Mode().Perm() != 0o600 || !strings.Contains(string(b), "ENCRYPTED") || strings.Contains(string(b), "BEGIN PRIVATE KEY") {
			t.Errorf("%s: mode %v, not encrypted", f, st.Mode().Perm())
		}
	}
	// The keys are standard encrypted PKCS#8: openssl reads the root key
	// with the passphrase file.
	if out, err := exec.Command("openssl", "pkey", "-in", filepath.Join(dir, "ca", "keys", "root.key"), "-passin", "file:"+pw, "-noout", "-text").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "NIST CURVE: P-384") {
		t.Fatalf("openssl pkey root.key: %v\n%s", err, out)
	}
	// Keys written in the older meshpki format are rewritten by
	// migrate-keys, once.
	pass := []byte("correct horse battery staple")
	for _, f := range keyFiles {
		if !strings.HasSuffix(f, ".key") {
			continue
		}
		b, _ := os.ReadFile(f)
		key, err := keys.ParsePrivateKeyPEM(b, pass)
		if err != nil {
			t.Fatal(err)
		}
		legacy, err := keys.EncryptLegacyPEM(key, pass)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, f, legacy, 0o600)
	}
	mustRun(t, "ca", "status", "--data", dir, "--password-file", pw)
	out, _ := mustRun(t, "ca", "migrate-keys", "--data", dir, "--password-file", pw)
	// root, default-1, and the server's jwt-svid and audit-checkpoint keys
	if !strings.Contains(out, "4 of 4 key files rewritten") {
		t.Fatalf("migrate-keys: %s", out)
	}
	for _, f := range keyFiles {
		if b, _ := os.ReadFile(f); strings.HasSuffix(f, ".key") && !strings.HasPrefix(string(b), "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
			t.Errorf("%s after migrate-keys: %.40s", f, b)
		}
	}
	if out, _ := mustRun(t, "ca", "migrate-keys", "--data", dir, "--password-file", pw); !strings.Contains(out, "0 of 4 key files rewritten") {
		t.Fatalf("migrate-keys again: %s", out)
	}
	mustRun(t, "ca", "status", "--data", dir, "--password-file", pw)
	// A second init refuses and changes nothing.
	code, _, errOut := invokeCLI(t, "", "ca", "init", "--data", dir, "--name", "Other", "--trust-domain", "other.internal", "--password-file", pw)
	if code == 0 || !strings.Contains(errOut, "already") {
		t.Fatalf("second init: exit %d %s", code, errOut)
	}
	// A wrong passphrase is a clear error.
	bad := filepath.Join(t.TempDir(), "bad")
	writeTestFile(t, bad, []byte("wrong"), 0o600)
	code, _, errOut = invokeCLI(t, "", "ca", "status", "--data", dir, "--password-file", bad)
	if code != 1 || !strings.Contains(errOut, "passphrase") {
		t.Fatalf("wrong passphrase: exit %d %s", code, errOut)
	}
	// Without any passphrase on first init, a development one is generated.
	dev := filepath.Join(t.TempDir(), "dev")
	_, warn := mustRun(t, "ca", "init", "--data", dev, "--name", "Dev", "--trust-domain", "dev.internal")
	if !strings.Contains(warn, "WARNING") {
		t.Errorf("no development warning: %s", warn)
	}
	st, err := os.Stat(filepath.Join(dev, "secrets", "password"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets/password: %v %v", st, err)
	}
	if dst, _ := os.Stat(filepath.Join(dev, "secrets")); dst.Mode().Perm() != 0o700 {
		t.Errorf("secrets dir mode %v", dst.Mode().Perm())
	}
}

func opensslVerifyFile(t *testing.T, in *servertest.Instance, chainFile string) {
	t.Helper()
	dir := t.TempDir()
	roots := filepath.Join(dir, "roots.pem")
	inters := filepath.Join(dir, "intermediates.pem")
	writeTestFile(t, roots, getBody(t, in, "/roots.pem"), 0o600)
	writeTestFile(t, inters, getBody(t, in, "/intermediates.pem"), 0o600)
	data, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	leaf := filepath.Join(dir, "leaf.pem")
	writeTestFile(t, leaf, pemCert(certs[0].Raw), 0o600)
	outp, err := exec.Command("openssl", "verify", "-CAfile", roots, "-untrusted", inters, leaf).CombinedOutput()
	if err != nil || !strings.Contains(string(outp), ": OK") {
		t.Fatalf("openssl verify %s: %v\n%s", chainFile, err, outp)
	}
}

func leafSerial(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return string(store.SerialOf(certs[0].SerialNumber))
}

func issuerSerialOf(t *testing.T, file string) string {
	t.Helper()
	data, _ := os.ReadFile(file)
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil || len(certs) < 2 {
		t.Fatalf("%s: want leaf and intermediate (%v)", file, err)
	}
	return string(store.SerialOf(certs[1].SerialNumber))
}

// TestJSONOutputForScripts: cert issue, cert renew and ca status print JSON
// with --json, and the server publishes meshpki_build_info.
func TestJSONOutputForScripts(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	out := t.TempDir()
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	tokOut, _ := mustRun(t, append([]string{"token", "create", "api", "--san", "api.example.internal"}, data...)...)
	stdout, _ := mustRun(t, "cert", "issue", "api", "--san", "api.example.internal", "--token", lastLine(tokOut),
		"--ca-url", in.URL, "--root", root, "--out", out, "--json")
	var issued issuedOutput
	if err := json.Unmarshal([]byte(stdout), &issued); err != nil || issued.Serial == "" || issued.CertificateFile != filepath.Join(out, "api.crt") ||
		len(issued.Names) != 1 || issued.NotAfter.IsZero() {
		t.Fatalf("cert issue --json: %v\n%s", err, stdout)
	}
	stdout, _ = mustRun(t, "cert", "renew", "--cert", issued.CertificateFile, "--key", issued.KeyFile, "--ca-url", in.URL, "--root", root, "--json")
	var renewed issuedOutput
	if err := json.Unmarshal([]byte(stdout), &renewed); err != nil || renewed.Serial == "" || renewed.Serial == issued.Serial {
		t.Fatalf("cert renew --json: %v\n%s", err, stdout)
	}
	stdout, _ = mustRun(t, append([]string{"ca", "status", "--json"}, data...)...)
	var st caStatus
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.TrustDomain != "test.internal" || len(st.Issuers) != 1 || st.Issuers[0].Name != "default" || len(st.Root.FingerprintSHA256) != 64 {
		t.Fatalf("ca status --json: %v\n%s", err, stdout)
	}
	metrics := string(getBody(t, in, "/metrics"))
	if !regexp.MustCompile(`(?m)^meshpki_build_info\{commit="[^"]+",goversion="go1\.[^"]+",version="[^"]+"\} 1$`).MatchString(metrics) {
		t.Fatalf("no meshpki_build_info in /metrics")
	}
}

// TestAuditCheckpointsCatchAConsistentRewrite plays the attacker who can
// write the database: record 2 is edited and every hash after it, and the
// stored head, recomputed, so the chain itself verifies. The checkpoint the
// server signed at shutdown, and a head hash saved elsewhere before, both
// catch it.
func TestAuditCheckpointsCatchAConsistentRewrite(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	mustRun(t, append([]string{"token", "create", "a", "--san", "a.example.internal"}, data...)...)
	savedHead, _, err := in.Server.Store().AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := in.Server.Store().ListAudit(context.Background(), savedHead-1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatal(err)
	}
	saved := hex.EncodeToString(evs[0].Hash)
	in.Stop() // signs a last checkpoint

	out, _ := mustRun(t, "audit", "verify", "--data", in.DataDir, "--head", saved)
	// The leader signs a checkpoint when its term starts (if the log is not
	// empty by then) and a last one at shutdown: one or two, by timing.
	if !regexp.MustCompile(`\b[12] signed checkpoints verified`).MatchString(out) || !strings.Contains(out, "saved head is in it") {
		t.Fatalf("audit verify before the rewrite: %s", out)
	}

	// The rewrite.
	dbFile := filepath.Join(in.DataDir, sqlstore.DefaultFile)
	st, err := sqlstore.OpenExisting(context.Background(), "", in.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	all, err := st.ListAudit(context.Background(), 0, 10000)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prev := audit.GenesisHash
	for i := range all {
		e := all[i]
		if e.Seq == 2 {
			e.Actor = "admin:forged"
		}
		audit.Seal(&e, e.Seq, prev)
		if _, err := db.Exec(`UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?`, e.Actor, e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	if _, err := db.Exec(`UPDATE audit_head SET hash = ? WHERE id = 1`, prev); err != nil {
		t.Fatal(err)
	}
	// Without the key and the saved head, the rewrite is invisible.
	if code, out, _ := invokeCLI(t, "", "audit", "verify", "--data", in.DataDir, "--checkpoint-key", filepath.Join(t.TempDir(), "none.pub")); code != exitError {
		t.Fatalf("verify with a missing key file: exit %d %s", code, out)
	}
	code, out, _ := invokeCLI(t, "", "audit", "verify", "--data", in.DataDir)
	if code != exitChecked || !strings.Contains(out, "rewritten") {
		t.Fatalf("audit verify after a consistent rewrite: exit %d\n%s", code, out)
	}
	code, out, _ = invokeCLI(t, "", "audit", "verify", "--data", in.DataDir, "--head", saved)
	if code != exitChecked || !strings.Contains(out, "saved outside the log") {
		t.Fatalf("audit verify --head after the rewrite: exit %d\n%s", code, out)
	}
}

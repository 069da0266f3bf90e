package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store/pgtest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// TestStoreEnvReachesEveryStoreCommand: with MESHPKI_STORE naming
// PostgreSQL and no --store, as on a replica's host, ca init and ca
// rotate-intermediate append their audit records to PostgreSQL and audit
// verify reads them there; no SQLite file appears in DIR to catch them.
func TestStoreEnvReachesEveryStoreCommand(t *testing.T) {
	clearConnectEnv(t)
	url := pgtest.URL(t)
	t.Setenv(StoreEnv, url)
	base := t.TempDir()
	dir, pw := filepath.Join(base, "data"), filepath.Join(base, "password")
	if err := os.WriteFile(pw, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw)
	mustRun(t, "ca", "rotate-intermediate", "--data", dir, "--password-file", pw)
	if out, _ := mustRun(t, "audit", "verify", "--data", dir); !strings.Contains(out, "2 records") {
		t.Fatalf("audit verify through MESHPKI_STORE: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, sqlstore.DefaultFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a SQLite store appeared in DIR: %v", err)
	}
	st, err := sqlstore.OpenExisting(context.Background(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.ListAudit(context.Background(), 0, 10)
	if err != nil || len(evs) != 2 || evs[0].Type != audit.TypeCAInitialized || evs[1].Type != audit.TypeCARotated {
		t.Fatalf("PostgreSQL's audit log: %v %+v", err, evs)
	}
}

// TestCopiedDataDirSharesServerKeys: ca init makes every key, the server's
// own JWT-SVID and checkpoint keys included, so replicas started on copies
// of DIR made right after it publish the same JWT-SVID key and sign
// checkpoints that one public key verifies; none rewrites DIR/ca.
func TestCopiedDataDirSharesServerKeys(t *testing.T) {
	clearConnectEnv(t)
	base := t.TempDir()
	dir := filepath.Join(base, "origin", "data")
	pw := filepath.Join(base, "origin", "password")
	writeTestFile(t, pw, []byte(servertest.Password+"\n"), 0o600)
	mustRun(t, "ca", "init", "--data", dir, "--name", "Acme", "--trust-domain", "acme.internal", "--password-file", pw)
	for _, f := range []string{"ca/keys/jwt-svid.key", "ca/keys/audit-checkpoint.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("ca init made no %s: %v", f, err)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, server.CheckpointKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	var kids []string
	for _, replica := range []string{"a", "b"} {
		copyDir := filepath.Join(base, replica, "data")
		writeTestFile(t, filepath.Join(base, replica, "password"), []byte(servertest.Password+"\n"), 0o600)
		if out, err := exec.Command("cp", "-a", dir, copyDir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		pubFile := filepath.Join(copyDir, server.CheckpointKeyFile)
		before, _ := os.Stat(pubFile)
		in := servertest.Start(t, servertest.Options{DataDir: copyDir})
		var bundle struct {
			Keys []struct {
				Use string `json:"use"`
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(getBody(t, in, "/bundle"), &bundle); err != nil {
			t.Fatal(err)
		}
		for _, k := range bundle.Keys {
			if k.Use == "jwt-svid" {
				kids = append(kids, k.Kid)
			}
		}
		in.Stop()
		after, err := os.Stat(pubFile)
		if err != nil || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("replica %s rewrote %s: %v", replica, server.CheckpointKeyFile, err)
		}
		if got, _ := os.ReadFile(pubFile); !bytes.Equal(got, pub) {
			t.Errorf("replica %s has another checkpoint key", replica)
		}
		if out, _ := mustRun(t, "audit", "verify", "--data", copyDir, "--checkpoint-key", filepath.Join(dir, server.CheckpointKeyFile)); !regexp.MustCompile(`\b[12] signed checkpoints verified`).MatchString(out) {
			t.Errorf("replica %s's checkpoint under the origin's key: %s", replica, out)
		}
	}
	if len(kids) != 2 || kids[0] != kids[1] {
		t.Fatalf("the replicas' JWT-SVID keys: %v", kids)
	}
}

// TestIntermediateRevokedThroughAnotherReplica: two replicas on one
// PostgreSQL store, each with its own copy of DIR made after ca init. An
// intermediate generation revoked through A is revoked on B too, although
// B's ca.json still shows it good: B signs nothing more with it, and B —
// the leader, so the one that builds CRLs — lists it on the root's CRL.
// Once DIR/ca is copied from A, B signs with A's replacement.
func TestIntermediateRevokedThroughAnotherReplica(t *testing.T) {
	clearConnectEnv(t)
	url := pgtest.URL(t)
	origin, copyOf := replicaDirs(t, url)
	// B starts first, so B leads and builds the CRLs. Both have the URL
	// of the load balancer a deployment puts before them (tokens name it).
	const lb = "https://ca.acme.internal:8443"
	b := servertest.Start(t, servertest.Options{DataDir: copyOf("b"), StoreURL: url, PublicURL: lb, HTTPListen: "127.0.0.1:0"})
	waitFor(t, func() (bool, bool) { return true, b.Server.Leading() })
	a := servertest.Start(t, servertest.Options{DataDir: copyOf("a"), StoreURL: url, PublicURL: lb})
	dataA := []string{"--data", a.DataDir, "--password-file", a.PasswordFile, "--ca-url", a.URL}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, dataA...)...)
	root := filepath.Join(origin, "ca", "root.crt")
	issueAtB := func(name string) (string, error) {
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", name + ".example.internal"}, dataA...)...)
		out := filepath.Join(t.TempDir(), name)
		code, stdout, stderr := invokeCLI(t, "", "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tok), "--ca-url", b.URL, "--root", root, "--out", out)
		if code != 0 {
			return "", fmt.Errorf("exit %d: %s%s", code, stdout, stderr)
		}
		return filepath.Join(out, name+".crt"), nil
	}
	gen1 := issuerCert(t, filepath.Join(origin, "ca", "issuers", "default-1.crt"))
	if leaf, err := issueAtB("before"); err != nil || issuerCert(t, leaf).CheckSignatureFrom(gen1) != nil {
		t.Fatalf("B before the revocation: %v", err)
	}

	mustRun(t, append([]string{"cert", "revoke", "--issuer", "default/1", "--reason", "cACompromise"}, dataA...)...)
	errText := waitFor(t, func() (string, bool) {
		_, err := issueAtB("during")
		return fmt.Sprint(err), err != nil
	})
	if !strings.Contains(errText, `intermediate "default" has no generation that may sign now`) || strings.Count(strings.TrimSpace(errText), "\n") > 0 {
		t.Errorf("B with its older ca.json: %s", errText)
	}
	waitFor(t, func() (bool, bool) {
		r := httpGet(t, b.Anonymous, b.PlainURL+"/crl/root.pem", nil)
		if r.status != 200 {
			return false, false
		}
		block, _ := pem.Decode(r.body)
		crl, err := x509.ParseRevocationList(block.Bytes)
		return true, err == nil && len(crl.RevokedCertificateEntries) == 1 && crl.RevokedCertificateEntries[0].SerialNumber.Cmp(gen1.SerialNumber) == 0
	})

	// The replacement arrives with A's ca.json.
	if out, err := exec.Command("cp", "-a", filepath.Join(a.DataDir, "ca")+"/.", filepath.Join(b.DataDir, "ca")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	gen2 := issuerCert(t, filepath.Join(a.DataDir, "ca", "issuers", "default-2.crt"))
	leaf := waitFor(t, func() (string, bool) {
		leaf, err := issueAtB("after")
		return leaf, err == nil
	})
	if err := issuerCert(t, leaf).CheckSignatureFrom(gen2); err != nil {
		t.Fatalf("B after the copy: %v", err)
	}
}

// replicaDirs makes a CA on the PostgreSQL store url with ca init, and
// returns its data directory and a function that copies it for a replica,
// as an operator copies DIR to each host.
func replicaDirs(t *testing.T, url string) (origin string, copyOf func(replica string) string) {
	t.Helper()
	base := t.TempDir()
	origin = filepath.Join(base, "origin", "data")
	writeTestFile(t, filepath.Join(base, "origin", "password"), []byte(servertest.Password+"\n"), 0o600)
	mustRun(t, "ca", "init", "--data", origin, "--name", "Acme", "--trust-domain", "acme.internal", "--store", url,
		"--password-file", filepath.Join(base, "origin", "password"))
	return origin, func(replica string) string {
		t.Helper()
		dir := filepath.Join(base, replica, "data")
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", origin, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		return dir
	}
}

// TestFollowerSignalsTheLeader: a schedule added, or asked to run, through
// a follower runs on the leader at once, although the leader's own poll
// for due schedules is an hour apart: the follower signals it through
// PostgreSQL.
func TestFollowerSignalsTheLeader(t *testing.T) {
	clearConnectEnv(t)
	url := pgtest.URL(t)
	_, copyOf := replicaDirs(t, url)
	egress := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	const lb = "https://ca.acme.internal:8443"
	leader := servertest.Start(t, servertest.Options{DataDir: copyOf("leader"), StoreURL: url, PublicURL: lb, AllowEgress: egress, ScanTick: time.Hour, AlertEvery: time.Hour})
	waitFor(t, func() (bool, bool) { return true, leader.Server.Leading() })
	follower := servertest.Start(t, servertest.Options{DataDir: copyOf("follower"), StoreURL: url, PublicURL: lb, AllowEgress: egress, ScanTick: time.Hour, AlertEvery: time.Hour})
	data := []string{"--data", follower.DataDir, "--password-file", follower.PasswordFile, "--ca-url", follower.URL}
	// The leader's first poll has passed: from now on only a wake runs a schedule.
	time.Sleep(500 * time.Millisecond)

	p := newTestPKI(t)
	key := newTestKey(t)
	leaf := p.issue(t, key.Public(), "web", []string{"web.test"}, nil, nil, 20*time.Hour)
	addr := serveLeaf(t, tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key})
	lastRun := func() time.Time {
		var list struct{ Schedules []client.ScanSchedule }
		out, _ := mustRun(t, append([]string{"scan", "schedule", "list", "--json"}, data...)...)
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Schedules) != 1 {
			t.Fatalf("schedule list: %v %s", err, out)
		}
		return list.Schedules[0].LastRun
	}
	mustRun(t, append([]string{"scan", "schedule", "add", "edge", "--target", addr, "--every", "1h"}, data...)...)
	first := waitFor(t, func() (time.Time, bool) { r := lastRun(); return r, !r.IsZero() })
	time.Sleep(1100 * time.Millisecond) // run times are kept to the second
	mustRun(t, append([]string{"scan", "schedule", "run", "edge"}, data...)...)
	waitFor(t, func() (bool, bool) { return true, lastRun().After(first) })

	// A rule made through the follower is evaluated at once, although the
	// leader evaluates by itself only every hour (and after its scans,
	// which ran before the rule existed).
	rcv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer rcv.Close()
	mustRun(t, append([]string{"alert", "channel", "add", "webhook", "am", "--url", rcv.URL}, data...)...)
	mustRun(t, append([]string{"alert", "rule", "add", "scanned", "--channel", "am", "--source", "scanned"}, data...)...)
	waitFor(t, func() (bool, bool) {
		var list client.AlertList
		out, _ := mustRun(t, append([]string{"alert", "list", "--json", "--state", "firing"}, data...)...)
		// The leaf, from another CA, served alone, names web.test only.
		return true, json.Unmarshal([]byte(out), &list) == nil && len(list.Alerts) > 0 && list.Alerts[0].Rule == "scanned"
	})
}

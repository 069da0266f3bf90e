package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/audit"
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

package api_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
)

// TestREADMECurlWalkthrough issues a certificate with curl, as the README
// shows, verifies it with openssl, and checks that curl sees the JSON error
// when the revoked certificate tries to renew.
func TestREADMECurlWalkthrough(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	addProvisioner(t, in, "web", webPolicy)
	dir := t.TempDir()
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	curl := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--cacert", root}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	key, csr := newCSR(t, keys.ECP256, "web", "web.example.internal")
	body, _ := json.Marshal(map[string]string{"csr": csr, "token": newToken(t, in, "web", "web", "web.example.internal"), "ttl": "24h"})
	var got issued
	if err := json.Unmarshal(curl("-H", "Content-Type: application/json", "-d", string(body), in.URL+"/v1/sign"), &got); err != nil || got.Serial == "" {
		t.Fatalf("sign with curl: %v %+v", err, got)
	}
	opensslVerify(t, in, got.Certificate)

	certFile, keyFile := filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	keyPEM, err := keys.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, []byte(got.Certificate), 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	do(t, in.Admin, "POST", in.URL+"/v1/revoke", map[string]any{"serial": got.Serial, "reason": "keyCompromise"}, nil)
	var e apiError
	out := curl("--cert", certFile, "--key", keyFile, "-X", "POST", in.URL+"/v1/renew")
	if err := json.Unmarshal(out, &e); err != nil || e.Error.Code != "unauthorized" || !strings.Contains(e.Error.Message, "revoked") {
		t.Fatalf("renew after revoke with curl: %s", out)
	}
}

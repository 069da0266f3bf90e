package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/servertest"
)

// TestACMECommandsAgainstRealServer adds an acme provisioner that requires
// external account binding, then creates and lists EAB keys, over HTTPS.
func TestACMECommandsAgainstRealServer(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}

	out, _ := mustRun(t, append([]string{"provisioner", "add", "acme", "teams", "--allow-dns", ".teams.test", "--require-eab"}, data...)...)
	if !strings.Contains(out, "/acme/teams/directory") || !strings.Contains(out, "required") {
		t.Fatalf("provisioner add acme: %s", out)
	}
	code, _, errOut := invokeCLI(t, "", append([]string{"provisioner", "add", "token", "web", "--allow-dns", ".web.test", "--require-eab"}, data...)...)
	if code != 2 || !strings.Contains(errOut, "--require-eab applies only to acme") {
		t.Fatalf("--require-eab on a token provisioner: exit %d, %q", code, errOut)
	}

	out, errOut = mustRun(t, append([]string{"acme", "eab", "create", "--provisioner", "teams"}, data...)...)
	if !strings.Contains(out, "key id") || !strings.Contains(out, "hmac key") || !strings.Contains(errOut, "shown only now") {
		t.Fatalf("eab create: %s / %s", out, errOut)
	}
	out, _ = mustRun(t, append([]string{"acme", "eab", "create", "--provisioner", "teams", "--json"}, data...)...)
	var k struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.KeyID == "" || len(k.HMACKey) < 40 {
		t.Fatalf("eab create --json: %v %s", err, out)
	}
	out, _ = mustRun(t, append([]string{"acme", "eab", "list", "--provisioner", "teams"}, data...)...)
	if !strings.Contains(out, k.KeyID) || strings.Count(out, "unused") != 2 || strings.Contains(out, k.HMACKey) {
		t.Fatalf("eab list: %s", out)
	}

	for _, args := range [][]string{
		{"acme", "eab", "create", "--provisioner", "nope"},
		{"acme", "eab", "list", "--provisioner", "nope"},
	} {
		code, _, errOut := invokeCLI(t, "", append(args, data...)...)
		if code != 1 || !strings.HasPrefix(errOut, "meshpki: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "nope") {
			t.Fatalf("%v: exit %d, %q", args, code, errOut)
		}
	}
	code, _, errOut = invokeCLI(t, "", append([]string{"acme", "eab", "create"}, data...)...)
	if code != 2 || !strings.Contains(errOut, "--provisioner is required") {
		t.Fatalf("eab create without --provisioner: exit %d, %q", code, errOut)
	}
}

package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/servertest"
)

// meshpki ui login prints a one-time sign-in URL on the server.
func TestUILogin(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	out, _ := mustRun(t, "ui", "login", "--data", in.DataDir, "--password-file", in.PasswordFile, "--json")
	var login struct{ URL string }
	if err := json.Unmarshal([]byte(out), &login); err != nil || !strings.Contains(login.URL, "/ui/login?token=") {
		t.Fatalf("%v %q", err, out)
	}
	text, _ := mustRun(t, "ui", "login", "--data", in.DataDir, "--password-file", in.PasswordFile)
	if !strings.Contains(text, "/ui/login?token=") || !strings.Contains(text, "one use") {
		t.Fatalf("%q", text)
	}
}

package acme_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/acme/acmetest"
	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// TestCertbot drives Debian's certbot against a real server: certonly with
// its standalone http-01 server on a high port, renew --force-renewal, and
// revoke. CI installs certbot (.ci/run); elsewhere the test is skipped when
// it is missing.
func TestCertbot(t *testing.T) {
	certbot, err := exec.LookPath("certbot")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("certbot is not installed; .ci/run installs it")
		}
		t.Skip("certbot is not installed (apt-get install certbot)")
	}
	dnsSrv := acmetest.StartDNS(t)
	port := freePort(t)
	in := servertest.Start(t, servertest.Options{ACMEValidation: validation.Config{HTTPPort: port, Resolver: dnsSrv.Addr, Timeout: 10 * time.Second}})
	e := &env{in: in, dns: dnsSrv}
	var cerr error
	e.admin, cerr = newAdmin(in)
	if cerr != nil {
		t.Fatal(cerr)
	}
	e.addProvisioner(t, "acme", false)

	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, in.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"--non-interactive", "--server", e.directory("acme"),
		"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"),
	}
	runCertbot := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, certbot, append(args, common...)...)
		cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+rootFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			logTail, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
			if len(logTail) > 6000 {
				logTail = logTail[len(logTail)-6000:]
			}
			t.Fatalf("certbot %s: %v\n%s\nlog:\n%s", args[0], err, out, logTail)
		}
		return string(out)
	}
	runCertbot("certonly", "--standalone", "--preferred-challenges", "http",
		"--http-01-port", strconv.Itoa(port), "--http-01-address", "127.0.0.1",
		"--agree-tos", "--register-unsafely-without-email",
		"-d", "certbot.test", "-d", "www.certbot.test", "--cert-name", "certbot")
	live := filepath.Join(dir, "config", "live", "certbot")
	first := readLeaf(t, filepath.Join(live, "fullchain.pem"))
	e.verifyLeaf(t, mustRead(t, filepath.Join(live, "fullchain.pem")), "certbot.test", "www.certbot.test")

	out := runCertbot("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "certbot")
	if !strings.Contains(out, "success") {
		t.Fatalf("certbot renew did not report success:\n%s", out)
	}
	second := readLeaf(t, filepath.Join(live, "fullchain.pem"))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certbot renew --force-renewal kept the same certificate")
	}

	runCertbot("revoke", "--cert-path", filepath.Join(live, "cert.pem"), "--reason", "superseded", "--no-delete-after-revoke")
	rec, err := in.Server.Store().GetCertificate(context.Background(), serialOf(second))
	if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 4 {
		t.Fatalf("after certbot revoke the store has %+v (%v)", rec.Status, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/cli"
)

// TestServerCommandOnEmptyDirectory runs the README's first command with the
// real binary: an empty data directory is initialised, the banner names the
// URL, the root fingerprint and the admin credential, the server answers
// over HTTPS, and SIGTERM stops it cleanly.
func TestServerCommandOnEmptyDirectory(t *testing.T) {
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "ca-data")
	srv := startServer(t, bin, "--data", data)
	url, bannerText := srv.url, srv.banner
	time.Sleep(100 * time.Millisecond) // let the rest of the banner arrive
	for _, want := range []string{"WARNING", "root fingerprint", "admin credential", "secrets/admin.crt"} {
		if !strings.Contains(bannerText(), want) {
			t.Errorf("banner lacks %q:\n%s", want, bannerText())
		}
	}
	rootPEM, err := os.ReadFile(filepath.Join(data, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("server did not exit cleanly on SIGTERM: %v", err)
	}
}

// TestBadUsageIsOneLineAndExit2 checks the CLI's error contract.
func TestBadUsageIsOneLineAndExit2(t *testing.T) {
	var out, errOut strings.Builder
	code := cli.Main([]string{"server", "--no-such-flag"}, strings.NewReader(""), &out, &errOut)
	if code != 2 || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || !strings.HasPrefix(errOut.String(), "meshpki: ") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	code = cli.Main([]string{"server"}, strings.NewReader(""), &out, &errOut)
	if code != 2 {
		t.Fatalf("server without --data: exit %d", code)
	}
}

func filterEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

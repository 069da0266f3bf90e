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

// TestServerFromConfigFile starts the real server with its data directory,
// passphrase file and DNS names from --config alone.
func TestServerFromConfigFile(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pw := writeSecret(t, dir, "pw", "config file test passphrase")
	cfg := writeSecret(t, dir, "server.yaml", "data: "+data+"\npassword-file: "+pw+"\ndns: [ca.config.test]\nlog-format: json\n")
	srv := startServer(t, bin, "--config", cfg)
	if _, err := os.Stat(filepath.Join(data, "ca", "root.crt")); err != nil {
		t.Fatalf("the data directory from the file was not used: %v\n%s", err, srv.banner())
	}
	if _, err := os.Stat(filepath.Join(data, "secrets", "password")); err == nil {
		t.Error("a passphrase was generated although the file names one")
	}
}

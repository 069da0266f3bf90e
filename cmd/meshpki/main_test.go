package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	cmd := exec.Command(bin, "server", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MESHPKI_PASSWORD=")
	cmd.Env = filterEnv(cmd.Env, "MESHPKI_PASSWORD")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var (
		mu     sync.Mutex
		banner strings.Builder
	)
	bannerText := func() string {
		mu.Lock()
		defer mu.Unlock()
		return banner.String()
	}
	lines := bufio.NewScanner(stdout)
	url := ""
	deadline := time.After(60 * time.Second)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			mu.Lock()
			banner.WriteString(lines.Text() + "\n")
			mu.Unlock()
			if m := regexp.MustCompile(`URL:\s+(https://\S+)`).FindStringSubmatch(lines.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case url = <-found:
	case <-deadline:
		t.Fatalf("no URL in the banner:\n%s", bannerText())
	}
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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
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

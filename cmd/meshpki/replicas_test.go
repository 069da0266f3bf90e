package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/servertest"
)

// buildBinary compiles meshpki once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshpki")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// runningServer is a 'meshpki server' process started by a test.
type runningServer struct {
	cmd    *exec.Cmd
	url    string        // from the banner
	banner func() string // everything printed on stdout so far
}

// startServer runs 'meshpki server' and returns once its banner names a URL.
func startServer(t *testing.T, bin string, args ...string) *runningServer {
	t.Helper()
	return startServerLogging(t, bin, io.Discard, args...)
}

// startServerLogging is startServer with the server's log written to
// stderr.
func startServerLogging(t *testing.T, bin string, stderr io.Writer, args ...string) *runningServer {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"server", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = filterEnv(os.Environ(), "MESHPKI_PASSWORD")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var (
		mu   sync.Mutex
		text strings.Builder
	)
	srv := &runningServer{cmd: cmd, banner: func() string {
		mu.Lock()
		defer mu.Unlock()
		return text.String()
	}}
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`^\s+URL:\s+(https://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			text.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case srv.url = <-found:
		return srv
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start:\n%s", srv.banner())
	}
	return nil
}

func runCLI(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = filterEnv(os.Environ(), "MESHPKI_PASSWORD")
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("%v: %s", err, ee.Stderr)
	}
	return string(out), err
}

// TestTwoServerProcessesShareOnePostgreSQL runs two real 'meshpki server'
// processes on one PostgreSQL store (the second told so by MESHPKI_STORE)
// and one data directory: both issue, a
// token spent on one is refused by the other, and no serial repeats.
func TestTwoServerProcessesShareOnePostgreSQL(t *testing.T) {
	pg := servertest.PostgresURL(t)
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	public := "https://ca.replicas.test:8443" // tokens are bound to the shared public URL
	startServer(t, bin, "--data", data, "--store", pg, "--url", public)
	// The banner shows the public URL; reach each replica on its listen address.
	addrA := listenAddr(t, data)
	// The second takes its store URL from MESHPKI_STORE, as a systemd unit
	// or a Helm chart gives a URL with a password.
	t.Setenv("MESHPKI_STORE", pg)
	startServer(t, bin, "--data", data, "--url", public)
	addrB := listenAddr(t, data)
	if addrA == addrB {
		t.Fatal("both replicas report the same address")
	}
	root := filepath.Join(data, "ca", "root.crt")
	on := func(addr string, args ...string) []string {
		return append(args, "--data", data, "--ca-url", "https://"+addr, "--root", root)
	}
	if out, err := runCLI(t, bin, on(addrA, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal")...); err != nil {
		t.Fatalf("provisioner add: %v %s", err, out)
	}
	out, err := runCLI(t, bin, on(addrA, "token", "create", "api", "--san", "api.example.internal")...)
	if err != nil {
		t.Fatal(err)
	}
	tok := lastLine(out)
	certs := t.TempDir()
	if _, err := runCLI(t, bin, "cert", "issue", "api", "--san", "api.example.internal", "--token", tok, "--ca-url", "https://"+addrB, "--root", root, "--out", certs); err != nil {
		t.Fatalf("issue on B with A's token: %v", err)
	}
	if _, err := runCLI(t, bin, "cert", "issue", "api", "--san", "api.example.internal", "--token", tok, "--ca-url", "https://"+addrA, "--root", root, "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replay on A: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		addr := addrA
		if i%2 == 1 {
			addr = addrB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("s%d", i)
			out, err := runCLI(t, bin, on(addr, "token", "create", name, "--san", name+".example.internal")...)
			if err != nil {
				errs <- err
				return
			}
			if _, err := runCLI(t, bin, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(out), "--ca-url", "https://"+addr, "--root", root, "--out", certs); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := runCLI(t, bin, on(addrB, "cert", "list", "--all", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	serials := regexp.MustCompile(`"serial":\s*"([0-9a-f]+)"`).FindAllStringSubmatch(list, -1)
	seen := map[string]bool{}
	for _, m := range serials {
		if seen[m[1]] {
			t.Errorf("serial %s listed twice", m[1])
		}
		seen[m[1]] = true
	}
	// 21 leaves, plus each replica's TLS certificate and at least one admin credential.
	if len(seen) < 24 {
		t.Errorf("%d certificates recorded, want at least 24", len(seen))
	}
	if out, err := runCLI(t, bin, "audit", "verify", "--store", pg); err != nil || !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify on the shared store: %v %s", err, out)
	}
}

// listenAddr reads the listen address the most recent server recorded.
func listenAddr(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "server.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"listen":\s*"([^"]+)"`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("server.json has no listen address: %s", b)
	}
	return m[1]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

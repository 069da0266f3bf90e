package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
)

// TestServerDrainsAndLogsOnSIGTERM: a request in flight when SIGTERM
// arrives still gets its answer; the server logs why and how it stopped,
// removes server.json, and exits 0.
func TestServerDrainsAndLogsOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "ca-data")
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--log-format", "json")
	cmd.Env = filterEnv(os.Environ(), "MESHPKI_PASSWORD")
	stdout, _ := cmd.StdoutPipe()
	var (
		mu     sync.Mutex
		stderr strings.Builder
	)
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		b, _ := io.ReadAll(errPipe)
		mu.Lock()
		stderr.Write(b)
		mu.Unlock()
	}()
	urlc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`^\s+URL:\s+(https://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-urlc:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	rootPEM, err := os.ReadFile(filepath.Join(data, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	// A request whose body is still arriving when the signal comes.
	body, w := io.Pipe()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", url+"/v1/sign", body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	io.WriteString(w, `{"csr": "`)
	time.Sleep(300 * time.Millisecond) // the request is in the handler
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the server is draining
	io.WriteString(w, `x", "token": "y"}`)
	w.Close()
	r := <-done
	if r.err != nil || r.status/100 != 4 {
		t.Fatalf("in-flight request: status %d, %v; want its (4xx) answer", r.status, r.err)
	}
	select {
	case <-stderrDone: // the process closed stderr: it has exited
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit within 30s of SIGTERM")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	mu.Lock()
	log := stderr.String()
	mu.Unlock()
	for _, want := range []string{`"msg":"shutting down"`, "terminated", `"msg":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("--log-format json wrote a line that is not JSON: %s", line)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "server.json")); !os.IsNotExist(err) {
		t.Errorf("server.json after exit: %v", err)
	}
}

// TestVersion: --version names the version, the commit the binary was built
// from and the Go that built it; a bad --log-format is a usage error.
func TestVersion(t *testing.T) {
	// Stamp the commit even where GOFLAGS says -buildvcs=false.
	bin := filepath.Join(t.TempDir(), "meshpki")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^meshpki \S+ \(commit [0-9a-f]{7,}(\+dirty)?, go1\.\d+`).Match(out) {
		t.Fatalf("--version: %q", out)
	}
	cmd := exec.Command(bin, "server", "--data", t.TempDir(), "--log-format", "yaml")
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "--log-format") {
		t.Fatalf("--log-format yaml: exit %d %s", cmd.ProcessState.ExitCode(), out)
	}
}

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProxy runs 'meshpki proxy' and waits until /readyz says it holds an
// identity.
func startProxy(t *testing.T, bin, admin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"proxy"}, args...), "--admin-listen", admin)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy %v never ready: %s", args, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The walkthrough of docs/MTLS.md: one agent, two services told apart by
// their binaries, an outbound proxy for web and an inbound proxy (HTTP
// mode) in front of api; the app sees web's verified identity. SIGTERM
// ends both proxies cleanly.
func TestProxyWalkthrough(t *testing.T) {
	bin := buildBinary(t)
	// api's proxy is another copy of the binary: the agent tells the two
	// workloads apart by unix:path.
	apiBin := filepath.Join(t.TempDir(), "meshpki-api")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(apiBin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "ca-data")
	srv := startServer(t, bin, "--data", data)
	node := "spiffe://meshpki.internal/node/n1"
	out, err := runCLI(t, bin, "token", "create", "--join", "--spiffe-id", node, "--data", data)
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"web": bin, "api": apiBin} {
		if out, err := runCLI(t, bin, "entry", "create", "--spiffe-id", "spiffe://meshpki.internal/ns/"+name, "--parent", node,
			"--selector", "unix:path:"+path, "--data", data); err != nil {
			t.Fatalf("entry %s: %v\n%s", name, err, out)
		}
	}
	dir, err := os.MkdirTemp("", "mtls")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	startAgent(t, bin, nil, "--server", srv.url, "--trust-bundle", filepath.Join(data, "ca", "root.crt"), "--socket", sock,
		"--data", filepath.Join(dir, "agent"), "--password-file", writeSecret(t, dir, "pass", "agent-passphrase"),
		"--join-token-file", writeSecret(t, dir, "join-token", lastLine(out)+"\n"))

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "api saw: %s", r.Header.Get("X-Forwarded-Client-Cert"))
	}))
	defer app.Close()
	inAddr, outAddr := freeAddr(t), freeAddr(t)
	workloadAPI := "unix://" + sock
	inbound := startProxy(t, apiBin, freeAddr(t), "inbound", "--listen", inAddr, "--to", strings.TrimPrefix(app.URL, "http://"), "--http",
		"--allow", "spiffe://meshpki.internal/ns/web", "--workload-api", workloadAPI)
	outbound := startProxy(t, bin, freeAddr(t), "outbound", "--listen", outAddr, "--to", inAddr,
		"--expect", "spiffe://meshpki.internal/ns/api", "--workload-api", workloadAPI)

	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + outAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	if !strings.Contains(string(body), "By=spiffe://meshpki.internal/ns/api;") || !strings.HasSuffix(string(body), ";URI=spiffe://meshpki.internal/ns/web") {
		t.Fatalf("the app saw %q", body)
	}
	for _, p := range []*exec.Cmd{outbound, inbound} {
		if err := p.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("proxy after SIGTERM: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("proxy did not stop on SIGTERM")
		}
	}
}

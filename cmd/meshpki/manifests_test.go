package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/declared"
)

// nginxBinary finds Debian's nginx; CI installs it, so there it must exist.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx", "nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed (apt-get install nginx); CI installs it")
	}
	t.Skip("nginx is not installed (apt-get install nginx)")
	return ""
}

// startNginx serves HTTPS on addr with the certificate files in certDir,
// writing its PID to pidFile, until the test ends.
func startNginx(t *testing.T, addr, certDir, pidFile string) {
	t.Helper()
	bin := nginxBinary(t)
	prefix := t.TempDir()
	conf := `worker_processes 1;
pid ` + pidFile + `;
error_log ` + prefix + `/error.log;
daemon off;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ` + prefix + `/body;
  proxy_temp_path ` + prefix + `/proxy;
  fastcgi_temp_path ` + prefix + `/fastcgi;
  uwsgi_temp_path ` + prefix + `/uwsgi;
  scgi_temp_path ` + prefix + `/scgi;
  server {
    listen ` + addr + ` ssl;
    ssl_certificate ` + certDir + `/tls.crt;
    ssl_certificate_key ` + certDir + `/tls.key;
    location / { return 200 "ok\n"; }
  }
}
`
	confFile := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confFile, "-p", prefix, "-e", prefix+"/error.log")
	if out, err := exec.Command(bin, "-t", "-c", confFile, "-p", prefix, "-e", prefix+"/error.log").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// TERM, not KILL: the master takes its workers with it.
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(prefix + "/error.log")
			t.Fatalf("nginx did not start:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentKeepsNginxServedThroughRenewals is the whole declared-certificate
// path with real parts: a node provisioner grants the node its names; a
// real agent reads a cert-manager manifest with a 5-minute certificate,
// issues it through the node API, and writes it; Debian's nginx serves it;
// the agent renews it and reloads nginx by the manifest's signal hook,
// while a client polling on new connections sees the new serial and not
// one failed request. 'agent status --json' reports it ready with its
// conditions; 'meshpki apply' finds it up to date, and refuses a manifest
// for a name outside the grant, saying so.
func TestAgentKeepsNginxServedThroughRenewals(t *testing.T) {
	nginxBinary(t)
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	pw := writeSecret(t, t.TempDir(), "pw", "manifests test passphrase")
	srv := startServer(t, bin, "--data", data, "--password-file", pw)
	root := filepath.Join(data, "ca", "root.crt")
	node := "spiffe://meshpki.internal/node/web1"
	if out, err := runCLI(t, bin, "provisioner", "add", "node", "web-hosts", "--node", node, "--allow-dns", "localhost,*.web.internal",
		"--allow-ip", "127.0.0.1", "--max-ttl", "1h", "--data", data, "--password-file", pw); err != nil {
		t.Fatalf("provisioner add: %v %s", err, out)
	}
	out, err := runCLI(t, bin, "token", "create", "--join", "--spiffe-id", node, "--data", data, "--password-file", pw)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	manifests, certRoot, agentData := filepath.Join(work, "manifests"), filepath.Join(work, "tls"), filepath.Join(work, "agent")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(work, "nginx.pid")
	certDir := filepath.Join(certRoot, "web")
	manifest := `apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
spec:
  secretName: web-tls
  issuerRef: {name: web-hosts, kind: ClusterIssuer}
  commonName: localhost
  dnsNames: [localhost, www.web.internal]
  ipAddresses: [127.0.0.1]
  duration: 5m
  renewBefore: 4m50s
  privateKey: {algorithm: ECDSA, encoding: PKCS8}
  meshpki:
    dir: ` + certDir + `
    hooks:
      - name: reload nginx
        signal: {pidFile: ` + pidFile + `, signal: HUP}
        timeout: 5s
`
	manifestFile := filepath.Join(manifests, "web.yaml")
	if err := os.WriteFile(manifestFile, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	agentArgs := []string{"--server", srv.url, "--trust-bundle", root, "--data", agentData, "--password-file", writeSecret(t, work, "agent-pw", "agent passphrase")}
	startAgent(t, bin, nil, append(agentArgs, "--socket", filepath.Join(work, "agent.sock"), "--join-token-file", writeSecret(t, work, "join", lastLine(out)+"\n"),
		"--manifests", manifests, "--cert-root", certRoot)...)

	// The first issuance, before nginx runs: its hook has no PID yet.
	waitForFile(t, filepath.Join(certDir, "tls.key"), 30*time.Second)
	addr := freeAddr(t)
	startNginx(t, addr, certDir, pidFile)

	roots := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(root)
	roots.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	var (
		mu       sync.Mutex
		serials  []string
		failures []error
		requests int
	)
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := client.Get("https://" + addr + "/")
			mu.Lock()
			requests++
			switch {
			case err != nil:
				failures = append(failures, err)
			case resp.StatusCode != 200:
				failures = append(failures, errors.New(resp.Status))
			default:
				s := resp.TLS.PeerCertificates[0].SerialNumber.Text(16)
				if len(serials) == 0 || serials[len(serials)-1] != s {
					serials = append(serials, s)
				}
			}
			mu.Unlock()
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		n := len(serials)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx never served a renewed certificate in 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // and it goes on serving
	close(stop)
	<-polled
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the renewal, first: %v", len(failures), requests, failures[0])
	}
	last := serials[len(serials)-1]
	t.Logf("%d requests on new connections, serials served in turn: %v", requests, serials)
	mu.Unlock()
	if onDisk := serialOf(t, filepath.Join(certDir, "tls.crt")); onDisk != last {
		t.Errorf("nginx serves %s, the files hold %s", last, onDisk)
	}

	// agent status --json: ready, renewed, the reload hook ran.
	statusOut, err := runCLI(t, bin, "agent", "status", "--data", agentData, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Declared declared.Report `json:"declared"`
	}
	if err := json.Unmarshal([]byte(statusOut), &status); err != nil || len(status.Declared.Certificates) != 1 {
		t.Fatalf("agent status --json: %v\n%s", err, statusOut)
	}
	c := status.Declared.Certificates[0]
	ready, _ := c.Condition(declared.ConditionReady)
	if !c.Ready || ready.Status != "True" || c.Revision < 2 || len(c.Hooks) != 1 || !c.Hooks[0].OK || c.RenewalTime.IsZero() || c.LastRenewal.IsZero() {
		t.Errorf("declared status: %+v", c)
	}
	human, err := runCLI(t, bin, "agent", "status", "--data", agentData)
	if err != nil || !strings.Contains(human, "declared certificates") || !strings.Contains(human, "1/1 ok") {
		t.Errorf("agent status: %v\n%s", err, human)
	}

	// apply -f: up to date; a name outside the grant is refused.
	applyArgs := append([]string{"apply", "--cert-root", certRoot}, agentArgs...)
	if out, err := runCLI(t, bin, append(applyArgs, "-f", manifestFile)...); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("apply of the same manifest: %v\n%s", err, out)
	}
	outside := strings.ReplaceAll(strings.ReplaceAll(manifest, "www.web.internal", "db.internal"), "name: web\n", "name: db\n")
	outside = strings.ReplaceAll(outside, certDir, filepath.Join(certRoot, "db"))
	outsideFile := writeSecret(t, work, "db.yaml", outside)
	_, err = runCLI(t, bin, append(applyArgs, "-f", outsideFile)...)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("apply of a name outside the grant: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(certRoot, "db")); serr == nil {
		t.Error("a refused manifest wrote files")
	}
}

func waitForFile(t *testing.T, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in %s", path, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

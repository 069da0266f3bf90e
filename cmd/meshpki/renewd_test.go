package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serialOf is the serial of the first certificate in a PEM file.
func serialOf(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.Text(16)
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// 'cert renew --daemon' renews a five-minute certificate when it is due,
// runs --exec after each renewal, stops on SIGTERM with exit code 0, and
// ends with exit code 1 when the CA refuses the certificate (revoked).
func TestRenewDaemon(t *testing.T) {
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	pw := writeSecret(t, t.TempDir(), "pw", "renew daemon test passphrase")
	srv := startServer(t, bin, "--data", data, "--password-file", pw)
	root := filepath.Join(data, "ca", "root.crt")
	if out, err := runCLI(t, bin, "provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--data", data, "--password-file", pw); err != nil {
		t.Fatalf("provisioner add: %v %s", err, out)
	}
	out, err := runCLI(t, bin, "token", "create", "api", "--san", "api.example.internal", "--provisioner", "web", "--data", data, "--password-file", pw)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := runCLI(t, bin, "cert", "issue", "api", "--san", "api.example.internal", "--token", lastLine(out), "--ca-url", srv.url,
		"--root", root, "--out", dir, "--ttl", "5m"); err != nil {
		t.Fatalf("cert issue: %v %s", err, out)
	}
	cert, key := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	first := serialOf(t, cert)
	hook := filepath.Join(dir, "hook.log")

	daemon := func() (*exec.Cmd, *lockedBuffer, chan error) {
		cmd := exec.Command(bin, "cert", "renew", "--cert", cert, "--key", key, "--ca-url", srv.url, "--root", root,
			"--daemon", "--renew-before", "4m50s", "--exec", "echo reloaded >> "+hook)
		stderr := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, stderr, done
	}
	cmd, stderr, done := daemon()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hooked, _ := os.ReadFile(hook)
		if serialOf(t, cert) != first && strings.Count(string(hooked), "reloaded") >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed in 30s:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "renewing at") || !strings.Contains(stderr.String(), "renewed api") {
		t.Errorf("the daemon's log:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop on SIGTERM")
	}

	// Revoked: the next renewal is refused, and the daemon ends.
	if out, err := runCLI(t, bin, "cert", "revoke", serialOf(t, cert), "--reason", "superseded", "--data", data, "--password-file", pw); err != nil {
		t.Fatalf("revoke: %v %s", err, out)
	}
	_, stderr, done = daemon()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "revoked") {
			t.Fatalf("a revoked certificate: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon went on with a revoked certificate:\n%s", stderr.String())
	}
}

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startAgent runs 'meshpki agent' with args and env and waits until its
// Workload API is up; it returns the process.
func startAgent(t *testing.T, bin string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"agent"}, args...)...)
	cmd.Env = append(filterEnv(filterEnv(os.Environ(), "MESHPKI_PASSWORD"), "MESHPKI_JOIN_TOKEN"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Workload API on") {
				up <- true
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			cmd.Wait()
			t.Fatalf("agent exited: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agent did not start: %s", stderr.String())
	}
	return cmd
}

// TestAgentJoinTokenNeverOnTheCommandLine starts real agents that take
// their join token from --join-token-file and from MESHPKI_JOIN_TOKEN: each
// attests, and the token is nowhere in the process's command line, which
// every local user can read.
func TestAgentJoinTokenNeverOnTheCommandLine(t *testing.T) {
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "ca-data")
	srv := startServer(t, bin, "--data", data)
	root := filepath.Join(data, "ca", "root.crt")
	for _, how := range []string{"file", "env"} {
		t.Run(how, func(t *testing.T) {
			out, err := runCLI(t, bin, "token", "create", "--join", "--spiffe-id", "spiffe://meshpki.internal/node/"+how, "--data", data)
			if err != nil {
				t.Fatal(err)
			}
			token := lastLine(out)
			dir := t.TempDir()
			args := []string{"--server", srv.url, "--trust-bundle", root, "--socket", filepath.Join(dir, "agent.sock"),
				"--data", filepath.Join(dir, "agent"), "--password-file", writeSecret(t, dir, "pass", "agent-passphrase")}
			var env []string
			if how == "file" {
				args = append(args, "--join-token-file", writeSecret(t, dir, "join-token", token+"\n"))
			} else {
				env = []string{"MESHPKI_JOIN_TOKEN=" + token}
			}
			agent := startAgent(t, bin, env, args...)
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(agent.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(cmdline), token) {
				t.Fatal("the join token is on the agent's command line")
			}
			status, err := runCLI(t, bin, "agent", "status", "--data", filepath.Join(dir, "agent"))
			if err != nil || !strings.Contains(status, "spiffe://meshpki.internal/node/"+how) {
				t.Fatalf("agent status: %v\n%s", err, status)
			}
		})
	}
	// Both ways at once is a usage error (exit 2), and changes nothing.
	dir := t.TempDir()
	cmd := exec.Command(bin, "agent", "--server", srv.url, "--trust-bundle", root, "--socket", filepath.Join(dir, "s"), "--data", filepath.Join(dir, "a"),
		"--join-token", "x", "--join-token-file", writeSecret(t, dir, "tok", "y"))
	if out, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "not both") {
		t.Fatalf("both token flags: exit %d %v: %s", cmd.ProcessState.ExitCode(), err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Fatal("a refused agent command created its data directory")
	}
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

package cli

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestServerConfigFile: a YAML file's keys are the flags; flags on the
// command line win; --print-config shows each value's source (a store URL's
// password redacted) and is itself a valid configuration file; mistakes
// are usage errors naming the file and line.
func TestServerConfigFile(t *testing.T) {
	clearConnectEnv(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("server.yaml", "data: /srv/ca\nlisten: 127.0.0.1:9443\ndns: [ca.example.internal, ca2.example.internal]\ncrl-validity: 2d\nacme-http-port: 8080\n")
	t.Setenv(StoreEnv, "postgres://meshpki:hunter2@db.internal/meshpki")
	out, _ := mustRun(t, "server", "--config", cfg, "--listen", "127.0.0.1:9444", "--print-config")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^data: "/srv/ca"  # .*server\.yaml:1$`),
		regexp.MustCompile(`(?m)^listen: "127\.0\.0\.1:9444"  # flag$`),
		regexp.MustCompile(`(?m)^dns: \["ca\.example\.internal", "ca2\.example\.internal"\]  # .*server\.yaml:3$`),
		regexp.MustCompile(`(?m)^crl-validity: "2d"  # .*:4$`),
		regexp.MustCompile(`(?m)^acme-http-port: 8080  # .*:5$`),
		regexp.MustCompile(`(?m)^store: "postgres://meshpki:xxxxx@db\.internal/meshpki"  # env MESHPKI_STORE$`),
		regexp.MustCompile(`(?m)^log-level: "info"  # default$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("--print-config lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Error("--print-config shows the store password")
	}
	// What it prints is a configuration file (the env value aside).
	t.Setenv(StoreEnv, "")
	printed := write("printed.yaml", regexp.MustCompile(`(?m)^store: .*$`).ReplaceAllString(out, `store: ""`))
	again, _ := mustRun(t, "server", "--config", printed, "--print-config")
	if !strings.Contains(again, `listen: "127.0.0.1:9444"  # `+printed) {
		t.Errorf("the printed configuration does not read back:\n%s", again)
	}

	for name, tc := range map[string]struct{ body, want string }{
		"unknown key":   {"data: /x\nlisten2: 1\n", `bad.yaml:2: unknown key "listen2"`},
		"twice":         {"data: /x\ndata: /y\n", "bad.yaml:2: key \"data\" is given twice (first at line 1)"},
		"list":          {"listen: [a, b]\n", "bad.yaml:1: listen takes one value, not a list"},
		"bad duration":  {"crl-validity: soon\n", "bad.yaml:1: crl-validity: "},
		"bad int":       {"acme-http-port: eighty\n", "bad.yaml:1: acme-http-port: "},
		"not a mapping": {"- data\n", "bad.yaml:1: the configuration is a mapping"},
		"malformed":     {"data: [\n", "bad.yaml: malformed YAML"},
		"the flag":      {"config: other.yaml\n", `unknown key "config"`},
		"nested":        {"dns: {a: b}\n", "bad.yaml:1: dns: give a value or a list"},
	} {
		p := write("bad.yaml", tc.body)
		code, _, errOut := invokeCLI(t, "", "server", "--config", p, "--print-config")
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%s: exit %d %q, want exit 2 and one line with %q", name, code, errOut, tc.want)
		}
	}
}

// TestAgentConfigFile: the agent reads the same kind of file.
func TestAgentConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte("server: https://ca.example.internal:8443\nmanifests: /etc/meshpki/manifests\ncert-root: [/etc/nginx/tls, /var/lib/meshpki/certs]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := mustRun(t, "agent", "--config", p, "--print-config")
	for _, want := range []string{`server: "https://ca.example.internal:8443"  # ` + p + `:1`, `cert-root: ["/etc/nginx/tls", "/var/lib/meshpki/certs"]  # ` + p + `:3`} {
		if !strings.Contains(out, want) {
			t.Errorf("agent --print-config lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := invokeCLI(t, "", "agent", "--config", p, "--socket-path", "x"); code != 2 || !strings.Contains(errOut, "unknown flag") {
		t.Errorf("a bad flag beside --config: exit %d %s", code, errOut)
	}
}

// FuzzConfigFile: whatever a configuration file holds, reading it gives a
// value or an error naming the file, and never a panic.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{"data: /x\nlisten: 127.0.0.1:1\n", "dns: [a, b]\n", "- x\n", "data: [\n", "crl-validity: 2d\nacme-http-port: 80\n", "a: {b: c}\n", "", "data: !!binary AAAA\n"} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var cmd *cobra.Command
		for _, c := range newRootCommand(nil, io.Discard, io.Discard).Commands() {
			if c.Name() == "server" {
				cmd = c
			}
		}
		if _, err := applyConfigFile(cmd, p); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("an error that does not name the file: %v", err)
		}
	})
}

package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnits: the units in deploy/systemd pass 'systemd-analyze
// verify' with the real binary at their ExecStart, keep the hardening the
// docs promise, and score "OK" (exposure under 4) in 'systemd-analyze
// security'.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed (apt-get install systemd)")
		}
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshpki")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/meshpki").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) != 2 {
		t.Fatalf("units: %v %v", units, err)
	}
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)
	for _, unit := range units {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "StateDirectory=", "Restart=on-failure", "LoadCredential=password:"} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
		if strings.Contains(unit, "server") && !strings.Contains(string(data), "DynamicUser=yes") {
			t.Errorf("%s does not run as a dynamic user", unit)
		}
		local := filepath.Join(dir, filepath.Base(unit))
		if err := os.WriteFile(local, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/meshpki", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sa, "verify", local).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		out, _ := exec.Command(sa, "security", "--offline=true", local).CombinedOutput()
		m := exposure.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("systemd-analyze security %s:\n%s", unit, out)
		}
		if level, _ := strconv.ParseFloat(m[1], 64); level >= 4 || m[2] != "OK" {
			t.Errorf("%s: exposure %s %s, want OK (under 4)", unit, m[1], m[2])
		}
		t.Logf("%s: exposure %s %s", filepath.Base(unit), m[1], m[2])
	}
}

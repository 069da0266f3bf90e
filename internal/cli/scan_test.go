package cli

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/monitor"
)

// meshpki scan prints a table or JSON lines and exits 0, 3 or 1 as its
// help says.
func TestScanCommand(t *testing.T) {
	p := newTestPKI(t)
	key := newTestKey(t)
	dir := t.TempDir()
	healthy := filepath.Join(dir, "healthy.pem")
	writeTestFile(t, healthy, p.chainPEM(p.issue(t, key.Public(), "web", []string{"web.test"}, nil, nil, 20*time.Hour)), 0o644)
	overdue := filepath.Join(dir, "overdue.pem")
	writeTestFile(t, overdue, p.chainPEM(p.issue(t, key.Public(), "api", []string{"api.test"}, nil, nil, 10*time.Minute)), 0o644)

	leaf := p.issue(t, key.Public(), "web", []string{"web.test"}, nil, nil, 20*time.Hour)
	endpoint := serveLeaf(t, tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key})

	code, out, errOut := invokeCLI(t, "", "scan", healthy, endpoint, "--sni", "web.test", "--root", p.rootFile)
	if code != exitOK || !strings.Contains(out, "TARGET") || strings.Count(out, " ok ") != 2 {
		t.Errorf("healthy file and endpoint: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = invokeCLI(t, "", "scan", healthy, overdue, "--root", p.rootFile)
	if code != exitChecked || !strings.Contains(out, "renewal_overdue") || !strings.Contains(errOut, "1 with findings at or above warning") {
		t.Errorf("overdue file: exit %d, want 3\n%s%s", code, out, errOut)
	}
	if code, _, _ := invokeCLI(t, "", "scan", overdue, "--root", p.rootFile, "--fail-on", "critical"); code != exitOK {
		t.Errorf("overdue file with --fail-on critical: exit %d, want 0", code)
	}

	code, out, _ = invokeCLI(t, "", "scan", overdue, endpoint, "--sni", "wrong.test", "--root", p.rootFile, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitChecked || len(lines) != 2 {
		t.Fatalf("--json: exit %d, %d lines\n%s", code, len(lines), out)
	}
	var got []monitor.Result
	for _, line := range lines {
		var r monitor.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if got[0].Target != overdue || got[0].Findings[0].Check != "renewal_overdue" || got[0].Chain[0].FingerprintSHA256 == "" || got[0].Chain[0].KeyType != "ec-p256" {
		t.Errorf("file result %+v", got[0])
	}
	if got[1].Target != endpoint || got[1].Findings[0].Check != "hostname_mismatch" || got[1].Findings[0].Severity != monitor.Error {
		t.Errorf("endpoint result %+v", got[1])
	}
	for _, field := range []string{`"target"`, `"error"`, `"chain"`, `"subject"`, `"sans"`, `"serial"`, `"issuer"`, `"not_before"`, `"not_after"`, `"fingerprint_sha256"`, `"key_type"`, `"signature_algorithm"`, `"findings"`, `"check"`, `"severity"`, `"message"`} {
		if !strings.Contains(out, field) {
			t.Errorf("--json output lacks %s", field)
		}
	}

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	code, out, errOut = invokeCLI(t, "", "scan", healthy, closedAddr, "--root", p.rootFile)
	if code != exitError || !strings.Contains(out, "connect:") || !strings.Contains(errOut, "1 targets could not be scanned") {
		t.Errorf("unreachable target: exit %d, want 1\n%s%s", code, out, errOut)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"scan"}, "missing TARGET"},
		{[]string{"scan", "10.0.0.0/16:443"}, "pass --allow-large"},
		{[]string{"scan", healthy, "--pkcs12-password", "hunter2"}, "visible to every user"},
		{[]string{"scan", healthy, "--fail-on", "loud"}, "use info, warning, error or critical"},
		{[]string{"scan", healthy, "--warn", "soon"}, "--warn"},
	} {
		code, _, errOut := invokeCLI(t, "", c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line saying %q", c.args, code, errOut, c.want)
		}
	}
}

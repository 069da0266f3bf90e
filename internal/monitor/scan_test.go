package monitor

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checksOf lists the check ids of findings, in order.
func checksOf(fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Check)
	}
	return out
}

// case of a TLS endpoint or a file and the findings it must give.
type healthCase struct {
	name  string
	spec  leafSpec
	drop  bool // present the leaf without its intermediate
	want  []string
	worst Severity
}

var healthCases = []healthCase{
	{name: "healthy", want: []string{}},
	{name: "expiring in 3 days", spec: leafSpec{notBefore: -87 * 24 * time.Hour, notAfter: 3 * 24 * time.Hour}, want: []string{CheckExpiresSoon}, worst: Error},
	{name: "expired", spec: leafSpec{notBefore: -90 * 24 * time.Hour, notAfter: -2 * 24 * time.Hour}, want: []string{CheckExpired}, worst: Critical},
	{name: "wrong host", spec: leafSpec{name: "other.test"}, want: []string{CheckHostname}, worst: Error},
	{name: "self-signed", spec: leafSpec{selfSigned: true}, want: []string{CheckSelfSigned}, worst: Error},
	{name: "missing intermediate", drop: true, want: []string{CheckIncompleteChain}, worst: Error},
	{name: "SHA-1 signed", spec: leafSpec{sigAlg: x509.SHA1WithRSA}, want: []string{CheckWeakSignature}, worst: Error},
	{name: "RSA-1024", spec: leafSpec{rsaBits: 1024}, want: []string{CheckWeakKey}, worst: Error},
	{name: "24h certificate renewing in time", spec: leafSpec{notBefore: -10 * time.Hour, notAfter: 14 * time.Hour}, want: []string{}},
	{name: "24h certificate not renewed", spec: leafSpec{notBefore: -20 * time.Hour, notAfter: 4 * time.Hour}, want: []string{CheckRenewalOverdue}, worst: Error},
}

// Every kind of endpoint gets exactly its findings.
func TestScanEndpoints(t *testing.T) {
	p := newPKI(t)
	var targets []Target
	for _, c := range healthCases {
		chain, key := p.leaf(t, c.spec)
		if c.drop {
			chain = chain[:1]
		}
		addr := serveTLS(t, chain, key)
		ts, err := ParseTargets([]string{addr}, TargetOptions{SNI: "svc.test"})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, ts...)
	}
	var progress []int
	s := &Scanner{Policy: &Policy{Roots: p.roots, Lint: true}, Concurrency: 3, Timeout: 5 * time.Second,
		Progress: func(done, total int) { progress = append(progress, done) }}
	results := s.Scan(context.Background(), targets)
	if len(results) != len(healthCases) {
		t.Fatalf("%d results for %d targets", len(results), len(healthCases))
	}
	for i, c := range healthCases {
		r := results[i]
		if r.Error != "" {
			t.Errorf("%s: %s", c.name, r.Error)
			continue
		}
		if got := checksOf(r.Findings); !slices.Equal(got, c.want) {
			t.Errorf("%s: findings %v, want %v (%+v)", c.name, got, c.want, r.Findings)
		}
		if got := Worst(r.Findings); got != c.worst {
			t.Errorf("%s: worst severity %v, want %v", c.name, got, c.worst)
		}
		if r.Target != targets[i].Name || len(r.Chain) == 0 || r.Chain[0].Subject == "" || r.Chain[0].FingerprintSHA256 == "" {
			t.Errorf("%s: result %+v does not describe its target and chain", c.name, r)
		}
	}
	if len(progress) != len(targets) || progress[len(progress)-1] != len(targets) {
		t.Errorf("progress reported %v for %d targets", progress, len(targets))
	}
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A directory of files gets the file findings (no hostname to check):
// garbage in it is passed over, a bundle of chains is one result a chain.
func TestScanDirectory(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	want := map[string][]string{}
	for i, c := range healthCases {
		chain, _ := p.leaf(t, c.spec)
		if c.drop {
			chain = chain[:1]
		}
		name := filepath.Join(dir, "sub", strings.ReplaceAll(c.name, " ", "-")+".pem")
		if i == 0 {
			name = filepath.Join(dir, "healthy.pem")
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		writePEM(t, name, chain...)
		w := slices.DeleteFunc(slices.Clone(c.want), func(s string) bool { return s == CheckHostname })
		want[name] = w
	}
	// Two chains in one file, and a DER root.
	a, _ := p.leaf(t, leafSpec{})
	b, _ := p.leaf(t, leafSpec{notBefore: -90 * 24 * time.Hour, notAfter: -time.Hour})
	bundle := filepath.Join(dir, "bundle.pem")
	writePEM(t, bundle, append(a, b...)...)
	want[bundle] = []string{}
	want[bundle+"#2"] = []string{CheckExpired}
	if err := os.WriteFile(filepath.Join(dir, "root.der"), p.root.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	want[filepath.Join(dir, "root.der")] = []string{}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not a certificate\x00\xff"), 0o600); err != nil {
		t.Fatal(err)
	}

	targets, err := ParseTargets([]string{dir}, TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	results := (&Scanner{Policy: &Policy{Roots: p.roots}}).Scan(context.Background(), targets)
	seen := map[string]bool{}
	for _, r := range results {
		if r.Silent {
			if !strings.HasSuffix(r.Target, "README") {
				t.Errorf("%s passed over: %s", r.Target, r.Error)
			}
			continue
		}
		w, ok := want[r.Target]
		if !ok {
			t.Errorf("unexpected result for %s", r.Target)
			continue
		}
		seen[r.Target] = true
		if r.Error != "" {
			t.Errorf("%s: %s", r.Target, r.Error)
		}
		if got := checksOf(r.Findings); !slices.Equal(got, w) {
			t.Errorf("%s: findings %v, want %v (%+v)", r.Target, got, w, r.Findings)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no result for %s", name)
		}
	}
}

// Bad input: each gives a clear error, promptly, and leaves no goroutine.
func TestScanBadInput(t *testing.T) {
	// A server that does not speak TLS.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, plain, func(c net.Conn) {
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	})
	// A server that accepts and then says nothing.
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, stall, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // reads the ClientHello, answers nothing
	})
	// A port nothing listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n\x00\x01"), 0o600); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(t.TempDir(), "random.bin")
	if err := os.WriteFile(binary, []byte{0x30, 0x82, 0x01, 0x00, 0xde, 0xad}, 0o600); err != nil {
		t.Fatal(err)
	}

	targets, err := ParseTargets([]string{plain.Addr().String(), stall.Addr().String(), closedAddr, garbage, binary}, TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	results := (&Scanner{Policy: &Policy{}, Timeout: 300 * time.Millisecond}).Scan(context.Background(), targets)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("scan took %v with a 300ms timeout", d)
	}
	for i, want := range []string{"does not speak TLS", "no answer before the timeout", "connect:", "no certificate", "no certificate"} {
		if r := results[i]; !strings.Contains(r.Error, want) || r.Silent || len(r.Chain) != 0 {
			t.Errorf("%s: error %q (silent %v), want one saying %q", r.Target, r.Error, r.Silent, want)
		}
	}

	for _, c := range []struct {
		args []string
		opts TargetOptions
		want string
	}{
		{[]string{"10.0.0.0/16:443"}, TargetOptions{}, "65536 addresses, more than 4096: pass --allow-large"},
		{[]string{"10.0.0.0/8:443"}, TargetOptions{AllowLarge: true}, "at most 1048576"},
		{[]string{"10.0.0.0/28"}, TargetOptions{}, "needs its ports"},
		{[]string{"10.0.0.0/28:0"}, TargetOptions{}, "is not a port"},
		{[]string{"example.internal"}, TargetOptions{}, "HOST:PORT"},
		{[]string{"ftp://example.internal"}, TargetOptions{}, "only https://"},
		{[]string{"a:1"}, TargetOptions{StartTLS: "pop3"}, "use smtp, imap, postgres or none"},
	} {
		if _, err := ParseTargets(c.args, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTargets(%v): %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

// A CIDR expands to every address and port; addresses where nothing
// listens are silent, the one that listens is scanned.
func TestScanRange(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{name: "127.0.0.1"})
	addr := serveTLS(t, chain, key)
	_, port, _ := net.SplitHostPort(addr)
	targets, err := ParseTargets([]string{"127.0.0.0/30:" + port + ",1"}, TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 8 || targets[0].Name != "127.0.0.0:"+port || targets[1].Name != "127.0.0.0:1" || targets[0].ServerName != "" {
		t.Fatalf("targets %+v", targets)
	}
	results := (&Scanner{Policy: &Policy{Roots: p.roots}, Timeout: 2 * time.Second}).Scan(context.Background(), targets)
	var answered []string
	for _, r := range results {
		if !r.Silent {
			answered = append(answered, r.Target)
		}
	}
	if !slices.Equal(answered, []string{addr}) {
		t.Errorf("answered %v, want only %s: %+v", answered, addr, results)
	}
}

func TestStartTLSPorts(t *testing.T) {
	ts, err := ParseTargets([]string{"mail.test:587", "imap.test:143", "db.test:5432", "web.test:443", "https://web.test/path"}, TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{StartTLSSMTP, StartTLSIMAP, StartTLSPostgres, "", ""} {
		if ts[i].StartTLS != want {
			t.Errorf("%s: STARTTLS %q, want %q", ts[i].Name, ts[i].StartTLS, want)
		}
	}
	if ts[4].Addr != "web.test:443" || ts[4].ServerName != "web.test" {
		t.Errorf("URL target %+v", ts[4])
	}
}

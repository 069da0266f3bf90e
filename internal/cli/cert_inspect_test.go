package cli

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/monitor"
)

// inspectFixture is a leaf for web.example.internal, 127.0.0.1 and a SPIFFE
// ID, signed by a test root, expiring in a little over three hours.
type inspectFixture struct {
	pki       *testPKI
	chainFile string
	fp        string
	serial    string
	tlsCert   tls.Certificate
}

func newInspectFixture(t *testing.T) *inspectFixture {
	t.Helper()
	pki := newTestPKI(t)
	key := newTestKey(t)
	spiffe, _ := url.Parse("spiffe://example.internal/web")
	// 3h12m plus a margin, so "expires in 3h12m" holds however slow the test.
	leaf := pki.issue(t, key.Public(), "web", []string{"web.example.internal"}, []net.IP{net.IPv4(127, 0, 0, 1)},
		[]*url.URL{spiffe}, 3*time.Hour+12*time.Minute+50*time.Second)
	chainFile, _ := writeCredential(t, t.TempDir(), "web", pki.chainPEM(leaf), key)
	sum := sha256.Sum256(leaf.Raw)
	return &inspectFixture{
		pki:       pki,
		chainFile: chainFile,
		fp:        monitor.ColonHex(sum[:]),
		serial:    leaf.SerialNumber.Text(16),
		tlsCert:   tls.Certificate{Certificate: [][]byte{leaf.Raw, pki.root.Raw}, PrivateKey: key},
	}
}

// serveTLS serves cert on 127.0.0.1 until the test ends and returns the address.
func serveTLS(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// wantLine checks that out has a line with label followed by value.
func wantLine(t *testing.T, out, label, value string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + ` +` + regexp.QuoteMeta(value) + `$`)
	if !re.MatchString(out) {
		t.Errorf("output has no line %q … %q:\n%s", label, value, out)
	}
}

func TestCertInspectFilePrintsLeafAndChain(t *testing.T) {
	fx := newInspectFixture(t)
	code, out, errOut := invokeCLI(t, "", "cert", "inspect", fx.chainFile, "--root", fx.pki.rootFile)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	wantLine(t, out, "source", fx.chainFile)
	wantLine(t, out, "subject", "CN=web")
	wantLine(t, out, "sans", "web.example.internal, 127.0.0.1, spiffe://example.internal/web")
	wantLine(t, out, "chain", "CN=web → CN=Test Root,O=meshpki tests")
	wantLine(t, out, "", "CN=Test Root,O=meshpki tests → CN=Test Root,O=meshpki tests")
	if !regexp.MustCompile(`(?m)^not after +\S+ \(expires in 3h12m\)$`).MatchString(out) {
		t.Errorf("no 'expires in 3h12m' on the not after line:\n%s", out)
	}
	wantLine(t, out, "serial", fx.serial)
	wantLine(t, out, "sha-256", fx.fp)
	wantLine(t, out, "key type", "ec-p256")
	wantLine(t, out, "key usage", "digitalSignature")
	wantLine(t, out, "ext key usage", "serverAuth, clientAuth")
	wantLine(t, out, "ca", "no")
	wantLine(t, out, "verified", "yes, chains to "+fx.pki.rootFile)
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("inspect printed key material")
	}
}

func TestCertInspectFileJSONHasTheSameFields(t *testing.T) {
	fx := newInspectFixture(t)
	code, out, errOut := invokeCLI(t, "", "cert", "inspect", fx.chainFile, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	for _, field := range []string{"source", "subject", "sans", "issuer", "chain", "not_before", "not_after", "expires",
		"expired", "serial", "fingerprint_sha256", "key_type", "key_usage", "ext_key_usage", "is_ca"} {
		if _, ok := got[field]; !ok {
			t.Errorf("JSON has no %q field", field)
		}
	}
	if _, ok := got["verification"]; ok {
		t.Error("JSON has a verification without --root")
	}
	var report inspectReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	if report.Subject != "CN=web" || report.Serial != fx.serial || report.FingerprintSHA256 != fx.fp ||
		report.KeyType != "ec-p256" || report.Expires != "expires in 3h12m" || report.Expired || len(report.Chain) != 2 ||
		strings.Join(report.SANs, " ") != "web.example.internal 127.0.0.1 spiffe://example.internal/web" {
		t.Errorf("report = %+v", report)
	}
}

func TestCertInspectHostPortReadsServedChain(t *testing.T) {
	fx := newInspectFixture(t)
	addr := serveTLS(t, fx.tlsCert)

	code, out, errOut := invokeCLI(t, "", "cert", "inspect", addr, "--root", fx.pki.rootFile)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	wantLine(t, out, "source", addr)
	wantLine(t, out, "subject", "CN=web")
	wantLine(t, out, "chain", "CN=web → CN=Test Root,O=meshpki tests")
	wantLine(t, out, "sha-256", fx.fp)
	wantLine(t, out, "verified", "yes, chains to "+fx.pki.rootFile)

	code, out, errOut = invokeCLI(t, "", "cert", "inspect", addr, "--json", "--root", fx.pki.rootFile, "--server-name", "other.example.internal")
	if code != exitChecked { // printed, and the answer is no
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var report inspectReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if report.Verification == nil || report.Verification.Verified || !strings.Contains(report.Verification.Error, "other.example.internal") {
		t.Errorf("verification for the wrong name = %+v, want a failure naming it", report.Verification)
	}
	if report.Serial != fx.serial {
		t.Errorf("serial = %q, want %q", report.Serial, fx.serial)
	}
}

func TestCertInspectReportsUntrustedChain(t *testing.T) {
	fx := newInspectFixture(t)
	other := newTestPKI(t)
	code, out, errOut := invokeCLI(t, "", "cert", "inspect", fx.chainFile, "--root", other.rootFile)
	if code != exitChecked {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^verified +no: .*unknown authority`).MatchString(out) {
		t.Errorf("want a 'verified  no: … unknown authority' line:\n%s", out)
	}
}

func TestCertInspectReadsStdin(t *testing.T) {
	fx := newInspectFixture(t)
	code, out, errOut := invokeCLI(t, string(fx.pki.rootPEM), "cert", "inspect", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	wantLine(t, out, "ca", "yes")
	wantLine(t, out, "key usage", "keyCertSign, cRLSign")
}

func TestCertInspectErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad-notpem.crt")
	writeTestFile(t, notPEM, []byte("hello"), 0o644)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no argument", []string{"cert", "inspect"}, 2, "missing FILE|HOST:PORT"},
		{"neither file nor host:port", []string{"cert", "inspect", filepath.Join(dir, "missing.crt")}, 1, "is neither a file nor HOST:PORT"},
		{"file without certificate", []string{"cert", "inspect", notPEM}, 1, "no certificate in it (not PEM, DER or PKCS#12)"},
		{"nothing listening", []string{"cert", "inspect", closedAddr(t)}, 1, "cannot connect to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := invokeCLI(t, "", tt.args...)
			if code != tt.wantCode || !strings.HasPrefix(errOut, "meshpki: ") || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestReadOnlyCommandsCreateNothing: a mistyped --data is an error, not an
// empty store that "verifies".
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	clearConnectEnv(t)
	typo := filepath.Join(t.TempDir(), "typo")
	for _, args := range [][]string{
		{"audit", "verify", "--data", typo},
		{"audit", "tail", "--data", typo},
		{"ca", "status", "--data", typo},
		{"cert", "list", "--data", typo},
		{"agent", "status", "--data", typo},
	} {
		code, out, errOut := invokeCLI(t, "", args...)
		if code != exitError || strings.Contains(out, "OK") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if _, err := os.Stat(typo); err == nil {
			t.Fatalf("%v created %s", args, typo)
		}
	}
}

// TestCertInspectExpiredExitsChecked: an expired certificate is printed
// and the exit code says "checked, and not OK".
func TestCertInspectExpiredExitsChecked(t *testing.T) {
	pki := newTestPKI(t)
	key := newTestKey(t)
	leaf := pki.issue(t, key.Public(), "old", []string{"old.example.internal"}, nil, nil, -10*time.Minute)
	file, _ := writeCredential(t, t.TempDir(), "old", pki.chainPEM(leaf), key)
	code, out, errOut := invokeCLI(t, "", "cert", "inspect", file, "--root", pki.rootFile)
	if code != exitChecked || !strings.Contains(out, "old.example.internal") || !strings.Contains(errOut, "expired") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

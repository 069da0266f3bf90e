package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/meshpki/meshpki/internal/servertest"
)

// openssl ocsp asks the server about a certificate it issued: good, then
// revoked after meshpki cert revoke. Malformed requests and requests for
// another CA's certificates get OCSP's own error answers.
func TestOCSPWithOpenSSL(t *testing.T) {
	clearConnectEnv(t)
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed")
	}
	in := servertest.Start(t, servertest.Options{HTTPListen: "127.0.0.1:0"})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	tokOut, _ := mustRun(t, append([]string{"token", "create", "svc", "--san", "svc.example.internal", "--provisioner", "web"}, data...)...)
	out := filepath.Join(t.TempDir(), "certs")
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	mustRun(t, "cert", "issue", "svc", "--san", "svc.example.internal", "--token", lastLine(tokOut), "--ca-url", in.URL, "--root", root, "--out", out)
	leaf := filepath.Join(out, "svc.crt")
	issuer := filepath.Join(in.DataDir, "ca", "issuers", "default-1.crt")

	// Over HTTPS and, as relying parties fetch it, over plain HTTP.
	ask := func(base string) string {
		t.Helper()
		cmd := exec.Command(openssl, "ocsp", "-issuer", issuer, "-cert", leaf, "-url", base+"/ocsp", "-CAfile", root)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, b)
		}
		return string(b)
	}
	for _, base := range []string{in.URL, in.PlainURL} {
		// openssl sends a nonce and warns when the response lacks it.
		if got := ask(base); !strings.Contains(got, "Response verify OK") || !strings.Contains(got, leaf+": good") || strings.Contains(got, "nonce") {
			t.Fatalf("before revocation, %s:\n%s", base, got)
		}
	}
	pemBytes, err := os.ReadFile(leaf)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	leafCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	serial := leafCert.SerialNumber.Text(16)
	mustRun(t, append([]string{"cert", "revoke", serial, "--reason", "keyCompromise"}, data...)...)
	for _, base := range []string{in.URL, in.PlainURL} {
		if got := ask(base); !strings.Contains(got, "Response verify OK") || !strings.Contains(got, leaf+": revoked") || !strings.Contains(got, "Reason: keyCompromise") {
			t.Fatalf("after revocation, %s:\n%s", base, got)
		}
	}
	// The plain listener serves what is public and signed, and nothing else.
	for path, want := range map[string]int{"/roots.pem": 200, "/intermediates.pem": 200, "/v1/certificates": 404, "/v1/sign": 404, "/metrics": 404} {
		resp, err := http.Get(in.PlainURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("plain GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// GET with the request in the path (RFC 6960, appendix A).
	ocspReq, err := ocsp.CreateRequest(leafCert, issuerCert(t, issuer), nil)
	if err != nil {
		t.Fatal(err)
	}
	getResp, err := http.Get(in.PlainURL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(ocspReq)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(getResp.Body)
	getResp.Body.Close()
	parsed, err := ocsp.ParseResponseForCert(body, leafCert, issuerCert(t, issuer))
	if err != nil || parsed.Status != ocsp.Revoked || getResp.Header.Get("ETag") == "" {
		t.Fatalf("GET: %v %+v", err, parsed)
	}

	for _, c := range []struct {
		body []byte
		want []byte
	}{
		{[]byte("not an OCSP request"), ocsp.MalformedRequestErrorResponse},
		{bytes.Repeat([]byte{0x30}, 20<<10), ocsp.MalformedRequestErrorResponse},
	} {
		resp, err := in.Anonymous.Post(in.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		got := new(bytes.Buffer)
		_, _ = got.ReadFrom(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got.Bytes(), c.want) || resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Errorf("POST %d bytes: %d %x", len(c.body), resp.StatusCode, got.Bytes())
		}
	}
	// A certificate of another CA: unauthorized.
	p := newTestPKI(t)
	otherLeaf := p.issue(t, newTestKey(t).Public(), "x", []string{"x.test"}, nil, nil, time.Hour)
	req, err := ocsp.CreateRequest(otherLeaf, p.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := in.Anonymous.Post(in.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	_, _ = got.ReadFrom(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got.Bytes(), ocsp.UnauthorizedErrorResponse) {
		t.Errorf("another CA's certificate: %x", got.Bytes())
	}
}

func issuerCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cert revoke --name and --spiffe-id revoke every valid certificate with
// the name, each audited, and OCSP says so at once.
func TestRevokeByName(t *testing.T) {
	clearConnectEnv(t)
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	issue := func(name, san string) {
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", san, "--provisioner", "web"}, data...)...)
		mustRun(t, "cert", "issue", name, "--san", san, "--token", lastLine(tok), "--ca-url", in.URL, "--root", root, "--out", filepath.Join(t.TempDir(), name))
	}
	issue("svc1", "svc.example.internal")
	issue("svc2", "svc.example.internal")
	issue("other", "other.example.internal")
	out, _ := mustRun(t, append([]string{"cert", "revoke", "--name", "svc.example.internal", "--reason", "superseded", "--json"}, data...)...)
	var got struct{ Revoked []string }
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Revoked) != 2 {
		t.Fatalf("revoke --name: %v %s", err, out)
	}
	listed, _ := mustRun(t, append([]string{"cert", "list", "--status", "revoked", "--json"}, data...)...)
	for _, sn := range got.Revoked {
		if !strings.Contains(listed, sn) {
			t.Errorf("%s not listed as revoked", sn)
		}
	}
	if strings.Contains(listed, "other.example.internal") {
		t.Error("a certificate with another name was revoked")
	}
	out, _ = mustRun(t, append([]string{"cert", "revoke", "--name", "svc.example.internal"}, data...)...)
	if !strings.Contains(out, "0 certificates revoked") {
		t.Errorf("again: %s", out)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "revoke", "abc", "--name", "x"}, exitUsage, "give one of SERIAL, --name, --spiffe-id, --issuer or --node"},
		{[]string{"cert", "revoke", "--name", "x", "--renewals"}, exitUsage, "--renewals goes with a SERIAL"},
		{[]string{"cert", "revoke"}, exitUsage, "missing SERIAL"},
		{[]string{"cert", "revoke", "--spiffe-id", "web"}, exitError, "is not a SPIFFE ID"},
	} {
		code, _, errOut := invokeCLI(t, "", append(c.args, data...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
}

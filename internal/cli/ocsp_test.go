package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
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
	in := servertest.Start(t, servertest.Options{})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	tokOut, _ := mustRun(t, append([]string{"token", "create", "svc", "--san", "svc.example.internal", "--provisioner", "web"}, data...)...)
	out := filepath.Join(t.TempDir(), "certs")
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	mustRun(t, "cert", "issue", "svc", "--san", "svc.example.internal", "--token", lastLine(tokOut), "--ca-url", in.URL, "--root", root, "--out", out)
	leaf := filepath.Join(out, "svc.crt")
	issuer := filepath.Join(in.DataDir, "ca", "issuers", "default-1.crt")

	ask := func() string {
		t.Helper()
		cmd := exec.Command(openssl, "ocsp", "-issuer", issuer, "-cert", leaf, "-url", in.URL+"/ocsp", "-CAfile", root)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, b)
		}
		return string(b)
	}
	if got := ask(); !strings.Contains(got, "Response verify OK") || !strings.Contains(got, leaf+": good") {
		t.Fatalf("before revocation:\n%s", got)
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
	if got := ask(); !strings.Contains(got, "Response verify OK") || !strings.Contains(got, leaf+": revoked") || !strings.Contains(got, "Reason: keyCompromise") {
		t.Fatalf("after revocation:\n%s", got)
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

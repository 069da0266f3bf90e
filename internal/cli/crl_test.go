package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/servertest"
	"golang.org/x/crypto/ocsp"
)

// A certificate that lives longer than a day carries a CRL Distribution
// Point and AIA on the plain-HTTP listener; openssl verifies every CRL
// (shard, full, root) and, following the CDP with -crl_download, accepts
// the certificate, then refuses it once meshpki cert revoke revoked it.
// A certificate of an hour carries no pointers.
func TestCRLWithOpenSSL(t *testing.T) {
	clearConnectEnv(t)
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed")
	}
	in := servertest.Start(t, servertest.Options{HTTPListen: "127.0.0.1:0"})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--max-ttl", "72h"}, data...)...)
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	issuer := filepath.Join(in.DataDir, "ca", "issuers", "default-1.crt")
	issue := func(name, ttl string) (string, *x509.Certificate) {
		t.Helper()
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", name + ".example.internal", "--provisioner", "web"}, data...)...)
		out := filepath.Join(t.TempDir(), name)
		mustRun(t, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tok), "--ca-url", in.URL, "--root", root, "--out", out, "--ttl", ttl)
		path := filepath.Join(out, name+".crt")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return path, c
	}
	leafPath, leaf := issue("long", "72h")
	if len(leaf.CRLDistributionPoints) != 1 || !strings.HasPrefix(leaf.CRLDistributionPoints[0], in.PlainURL+"/crl/default/1/") ||
		len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != in.PlainURL+"/ocsp" ||
		len(leaf.IssuingCertificateURL) != 1 || leaf.IssuingCertificateURL[0] != in.PlainURL+"/intermediates/default/1.der" {
		t.Fatalf("pointers of a 72h certificate: CDP %v, OCSP %v, caIssuers %v", leaf.CRLDistributionPoints, leaf.OCSPServer, leaf.IssuingCertificateURL)
	}
	if _, short := issue("short", "1h"); len(short.CRLDistributionPoints)+len(short.OCSPServer)+len(short.IssuingCertificateURL) != 0 {
		t.Fatalf("a 1h certificate carries pointers: %v %v %v", short.CRLDistributionPoints, short.OCSPServer, short.IssuingCertificateURL)
	}

	// caIssuers is the issuer's certificate in DER.
	aia := httpGet(t, in.Anonymous, leaf.IssuingCertificateURL[0], nil)
	if !bytes.Equal(aia.body, issuerCert(t, issuer).Raw) || aia.header.Get("Content-Type") != "application/pkix-cert" {
		t.Fatalf("caIssuers: %d %s", aia.status, aia.header.Get("Content-Type"))
	}

	dir := t.TempDir()
	chain := filepath.Join(dir, "chain.pem")
	writeConcat(t, chain, issuer, root)
	verifyCRL := func(url, caFile string, pemForm bool) string {
		t.Helper()
		r := waitFor(t, func() (httpResult, bool) { r := httpGet(t, in.Anonymous, url, nil); return r, r.status == 200 })
		file := filepath.Join(dir, "crl")
		if err := os.WriteFile(file, r.body, 0o600); err != nil {
			t.Fatal(err)
		}
		form := "DER"
		if pemForm {
			form = "PEM"
		}
		out, err := exec.Command(openssl, "crl", "-inform", form, "-in", file, "-CAfile", caFile, "-noout", "-text", "-verify").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "verify OK") {
			t.Fatalf("openssl crl -verify %s: %v\n%s", url, err, out)
		}
		return string(out)
	}
	verifyLeaf := func() (string, error) {
		out, err := exec.Command(openssl, "verify", "-crl_check", "-crl_download", "-CAfile", root, "-untrusted", issuer, leafPath).CombinedOutput()
		return string(out), err
	}
	verifyCRL(leaf.CRLDistributionPoints[0], chain, false)
	if out, err := verifyLeaf(); err != nil || !strings.Contains(out, ": OK") {
		t.Fatalf("before revocation, openssl verify -crl_check -crl_download: %v\n%s", err, out)
	}

	serial := leaf.SerialNumber.Text(16)
	mustRun(t, append([]string{"cert", "revoke", serial, "--reason", "keyCompromise"}, data...)...)
	wantSerial := strings.ToUpper(serial)
	waitFor(t, func() (struct{}, bool) {
		return struct{}{}, strings.Contains(verifyCRL(leaf.CRLDistributionPoints[0], chain, false), wantSerial)
	})
	if out, err := verifyLeaf(); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("after revocation, openssl verify -crl_check -crl_download: %v\n%s", err, out)
	}
	for _, path := range []string{"/crl", "/crl/default", "/crl/default/1"} {
		text := verifyCRL(in.PlainURL+path, chain, false)
		if !strings.Contains(text, wantSerial) || !strings.Contains(text, "Key Compromise") {
			t.Errorf("%s does not list %s with its reason:\n%s", path, serial, text)
		}
	}
	if text := verifyCRL(in.URL+"/crl/default.pem", chain, true); !strings.Contains(text, wantSerial) {
		t.Errorf("/crl/default.pem over HTTPS does not list %s", serial)
	}
	if text := verifyCRL(in.PlainURL+"/crl/root", root, false); !strings.Contains(text, "No Revoked Certificates") {
		t.Errorf("the root's CRL lists revocations:\n%s", text)
	}

	// Conditional requests: the ETag and Last-Modified answer 304.
	first := httpGet(t, in.Anonymous, in.PlainURL+"/crl", nil)
	etag, modified := first.header.Get("ETag"), first.header.Get("Last-Modified")
	if etag == "" || modified == "" || first.header.Get("Cache-Control") == "" || first.header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL headers: %v", first.header)
	}
	if r := httpGet(t, in.Anonymous, in.PlainURL+"/crl", map[string]string{"If-None-Match": etag}); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", r.status)
	}
	if r := httpGet(t, in.Anonymous, in.PlainURL+"/crl", map[string]string{"If-Modified-Since": modified}); r.status != http.StatusNotModified {
		t.Errorf("If-Modified-Since: %d", r.status)
	}
	// Unknown issuers, generations and shards: a JSON 404.
	for _, path := range []string{"/crl/nope", "/crl/default/9", "/crl/default/1/999", "/crl/" + strings.Repeat("x", 5000), "/intermediates/default/7.der"} {
		r := httpGet(t, in.Anonymous, in.PlainURL+path, nil)
		var e struct {
			Error struct{ Code, Message string }
		}
		if r.status != http.StatusNotFound || json.Unmarshal(r.body, &e) != nil || e.Error.Code != "not_found" || len(e.Error.Message) > 600 {
			t.Errorf("GET %.60s: %d %.200s (%d bytes)", path, r.status, r.body, len(r.body))
		}
	}
}

// meshpki cert revoke --issuer default/1 revokes the generation (on the
// root's CRL, which openssl then holds against the chain), every
// certificate it signed (on its own CRL), and rotates in generation 2,
// which signs from then on.
func TestRevokeIssuerWithOpenSSL(t *testing.T) {
	clearConnectEnv(t)
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed")
	}
	in := servertest.Start(t, servertest.Options{HTTPListen: "127.0.0.1:0"})
	data := []string{"--data", in.DataDir, "--password-file", in.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal", "--max-ttl", "72h"}, data...)...)
	root := filepath.Join(in.DataDir, "ca", "root.crt")
	gen1 := filepath.Join(in.DataDir, "ca", "issuers", "default-1.crt")
	issue := func(name string) string {
		t.Helper()
		tok, _ := mustRun(t, append([]string{"token", "create", name, "--san", name + ".example.internal", "--provisioner", "web"}, data...)...)
		out := filepath.Join(t.TempDir(), name)
		mustRun(t, "cert", "issue", name, "--san", name+".example.internal", "--token", lastLine(tok), "--ca-url", in.URL, "--root", root, "--out", out, "--ttl", "48h")
		return filepath.Join(out, name+".crt")
	}
	before := issue("before")
	leafSerial := strings.ToLower(issuerCert(t, before).SerialNumber.Text(16))

	out, _ := mustRun(t, append([]string{"cert", "revoke", "--issuer", "default/1", "--reason", "cACompromise", "--json"}, data...)...)
	var set struct {
		Revoked      []string
		Intermediate string
		Replacement  string
	}
	if err := json.Unmarshal([]byte(out), &set); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	interSerial := strings.ToLower(issuerCert(t, gen1).SerialNumber.Text(16))
	if set.Intermediate != interSerial || set.Replacement != "default/2" || !slices.Contains(set.Revoked, leafSerial) {
		t.Fatalf("revoke --issuer: %s", out)
	}
	// Generation 2 signs what is issued now.
	after := issuerCert(t, issue("after"))
	gen2 := issuerCert(t, filepath.Join(in.DataDir, "ca", "issuers", "default-2.crt"))
	if err := after.CheckSignatureFrom(gen2); err != nil {
		t.Fatalf("a certificate issued after the revocation: %v", err)
	}

	dir := t.TempDir()
	fetch := func(path string) string {
		t.Helper()
		r := waitFor(t, func() (httpResult, bool) {
			r := httpGet(t, in.Anonymous, in.PlainURL+path, nil)
			return r, r.status == 200 && bytes.Contains(r.body, []byte("X509 CRL")) && crlLists(t, r.body, path)
		})
		file := filepath.Join(dir, strings.ReplaceAll(strings.Trim(path, "/"), "/", "-"))
		if err := os.WriteFile(file, r.body, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	rootCRL := fetch("/crl/root.pem")
	gen1CRL := fetch("/crl/default/1.pem")
	verify := func(leaf string) string {
		out, _ := exec.Command(openssl, "verify", "-crl_check_all", "-CRLfile", rootCRL, "-CRLfile", gen1CRL,
			"-CAfile", root, "-untrusted", gen1, leaf).CombinedOutput()
		return string(out)
	}
	if got := verify(before); !strings.Contains(got, "certificate revoked") {
		t.Fatalf("openssl verify -crl_check_all of a certificate of the revoked generation:\n%s", got)
	}
	// Bad input: an issuer that is not NAME/GEN, one that does not exist.
	for _, bad := range []string{"default", "default/x", "nope/1"} {
		code, _, errOut := invokeCLI(t, "", append([]string{"cert", "revoke", "--issuer", bad}, data...)...)
		if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("revoke --issuer %s: exit %d, %q", bad, code, errOut)
		}
	}
	if code, _, errOut := invokeCLI(t, "", append([]string{"cert", "revoke", "--node", "spiffe://meshpki.internal/nope"}, data...)...); code == 0 {
		t.Errorf("revoke --node of an unknown node: exit 0 %q", errOut)
	}
}

// crlLists reports whether the PEM CRL body lists anything (the revoked
// generation's and the root's CRLs must, once rebuilt).
func crlLists(t *testing.T, body []byte, path string) bool {
	t.Helper()
	block, _ := pem.Decode(body)
	if block == nil {
		t.Fatalf("%s: not PEM", path)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return len(crl.RevokedCertificateEntries) > 0
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func httpGet(t *testing.T, client *http.Client, url string, headers map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, resp.Header, body}
}

// waitFor polls f until it reports done, for at most 10 seconds.
func waitFor[T any](t *testing.T, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatal("gave up waiting")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeConcat(t *testing.T, dst string, srcs ...string) {
	t.Helper()
	var all []byte
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(dst, all, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Two replicas on one PostgreSQL database: a revocation made through one
// shows in both replicas' OCSP answers and CRLs, and both serve the same
// CRL (the same number and bytes).
func TestRevocationAcrossReplicas(t *testing.T) {
	clearConnectEnv(t)
	url := servertest.PostgresURL(t)
	a := servertest.Start(t, servertest.Options{StoreURL: url, HTTPListen: "127.0.0.1:0"})
	b := servertest.Start(t, servertest.Options{StoreURL: url, DataDir: a.DataDir, HTTPListen: "127.0.0.1:0"})
	data := []string{"--data", a.DataDir, "--password-file", a.PasswordFile}
	mustRun(t, append([]string{"provisioner", "add", "token", "web", "--allow-dns", "*.example.internal"}, data...)...)
	root := filepath.Join(a.DataDir, "ca", "root.crt")
	issuer := issuerCert(t, filepath.Join(a.DataDir, "ca", "issuers", "default-1.crt"))
	tok, _ := mustRun(t, append([]string{"token", "create", "svc", "--san", "svc.example.internal", "--provisioner", "web"}, data...)...)
	out := t.TempDir()
	// The CLI on the CA host talks to the replica that started last (its
	// server.json), which the token is bound to.
	mustRun(t, "cert", "issue", "svc", "--san", "svc.example.internal", "--token", lastLine(tok), "--ca-url", b.URL, "--root", root, "--out", out)
	leaf := issuerCert(t, filepath.Join(out, "svc.crt"))
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	status := func(in *servertest.Instance) int {
		t.Helper()
		resp, err := in.Anonymous.Post(in.PlainURL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	crl := func(in *servertest.Instance) httpResult { return httpGet(t, in.Anonymous, in.PlainURL+"/crl", nil) }
	for _, in := range []*servertest.Instance{a, b} {
		if s := status(in); s != ocsp.Good {
			t.Fatalf("before revocation: OCSP status %d", s)
		}
	}
	mustRun(t, append([]string{"cert", "revoke", leaf.SerialNumber.Text(16), "--reason", "superseded"}, data...)...)
	for _, in := range []*servertest.Instance{a, b} {
		waitFor(t, func() (struct{}, bool) { return struct{}{}, status(in) == ocsp.Revoked })
	}
	listed := func(r httpResult) bool {
		c, err := x509.ParseRevocationList(r.body)
		if err != nil || r.status != 200 {
			return false
		}
		for _, e := range c.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, func() (struct{}, bool) {
		ra, rb := crl(a), crl(b)
		return struct{}{}, listed(ra) && listed(rb) && ra.header.Get("ETag") == rb.header.Get("ETag") && bytes.Equal(ra.body, rb.body)
	})
}

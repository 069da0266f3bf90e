package api_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
)

// do sends a JSON request and decodes the JSON answer into out (if not nil).
// It returns the status and the raw body.
func do(t testing.TB, c *http.Client, method, url string, body any, out any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode, raw
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantError checks a JSON error response.
func wantError(t testing.TB, status int, raw []byte, wantStatus int, wantCode string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("error body is not JSON: %q", raw)
	}
	if status != wantStatus || e.Error.Code != wantCode || e.Error.Message == "" {
		t.Fatalf("got %d %+v, want %d %s with a message", status, e, wantStatus, wantCode)
	}
	return e
}

type provisioner struct {
	Name   string         `json:"name"`
	Type   string         `json:"type"`
	Policy map[string]any `json:"policy"`
}

func addProvisioner(t testing.TB, in *servertest.Instance, name string, pol map[string]any) {
	t.Helper()
	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/provisioners", provisioner{Name: name, Type: "token", Policy: pol}, nil)
	if status != http.StatusCreated {
		t.Fatalf("add provisioner: %d %s", status, raw)
	}
}

type tokenResp struct {
	Token       string `json:"token"`
	ID          string `json:"id"`
	Provisioner string `json:"provisioner"`
}

func newToken(t testing.TB, in *servertest.Instance, prov, subject string, sans ...string) string {
	t.Helper()
	var tr tokenResp
	status, raw := do(t, in.Admin, "POST", in.URL+"/v1/tokens", map[string]any{"subject": subject, "sans": sans, "provisioner": prov}, &tr)
	if status != http.StatusCreated {
		t.Fatalf("create token: %d %s", status, raw)
	}
	return tr.Token
}

// newCSR makes a key of type kt and a PEM CSR for the given SANs.
func newCSR(t testing.TB, kt keys.KeyType, cn string, sans ...string) (crypto.Signer, string) {
	t.Helper()
	key, err := kt.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return key, csrFor(t, key, cn, sans...)
}

func csrFor(t testing.TB, key crypto.Signer, cn string, sans ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, s := range sans {
		switch {
		case net.ParseIP(s) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
		case strings.Contains(s, "://"):
			u, _ := url.Parse(s)
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(s, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

type issued struct {
	Certificate string `json:"certificate"`
	Serial      string `json:"serial"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
}

// opensslVerify checks a leaf+chain PEM with openssl against the server's
// /roots.pem and /intermediates.pem.
func opensslVerify(t testing.TB, in *servertest.Instance, chainPEM string) {
	t.Helper()
	dir := t.TempDir()
	_, roots := do(t, in.Anonymous, "GET", in.URL+"/roots.pem", nil, nil)
	_, inters := do(t, in.Anonymous, "GET", in.URL+"/intermediates.pem", nil, nil)
	block, _ := pem.Decode([]byte(chainPEM))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := write("leaf.pem", pem.EncodeToMemory(block))
	cmd := exec.Command("openssl", "verify", "-CAfile", write("roots.pem", roots), "-untrusted", write("intermediates.pem", inters), leaf)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/store"
)

// These tests run the client commands against a fake of the CA's API, to
// check what they send, print and write. End-to-end tests against the real
// server live with the server.

// adminArgs are connect flags with an admin credential for the fake.
func adminArgs(t *testing.T, ca *fakeCA) []string {
	t.Helper()
	pki := newTestPKI(t)
	key := newTestKey(t)
	cert := pki.issue(t, key.Public(), "admin", nil, nil, nil, time.Hour)
	certFile, keyFile := writeCredential(t, t.TempDir(), "admin", pki.chainPEM(cert), key)
	return []string{"--ca-url", ca.url, "--root", ca.rootFile, "--cert", certFile, "--key", keyFile}
}

func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

func TestPolicyCheckExitCodes(t *testing.T) {
	clearConnectEnv(t)
	ca := newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/policy/check" || len(r.TLS.PeerCertificates) == 0 {
			writeAPIError(w, http.StatusUnauthorized, "unauthorized", "no admin certificate")
			return
		}
		var req client.PolicyCheckRequest
		json.NewDecoder(r.Body).Decode(&req)
		if req.SANs[0] == "db.example.internal" {
			io.WriteString(w, `{"allowed":false,"rule":"deny_dns \"db.example.internal\"","reason":"db.example.internal is denied"}`)
			return
		}
		io.WriteString(w, `{"allowed":true,"rule":"allow_dns \"*.example.internal\"","reason":"web.example.internal is allowed"}`)
	}))
	admin := adminArgs(t, ca)

	code, out, errOut := invokeCLI(t, "", append([]string{"policy", "check", "--provisioner", "web", "--san", "web.example.internal"}, admin...)...)
	if code != 0 || errOut != "" {
		t.Fatalf("allow: exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "allow\n") {
		t.Errorf("allow output = %q", out)
	}
	wantLine(t, out, "rule", `allow_dns "*.example.internal"`)

	code, out, errOut = invokeCLI(t, "", append([]string{"policy", "check", "--provisioner", "web", "--san", "db.example.internal"}, admin...)...)
	if code != exitChecked || errOut != "" {
		t.Fatalf("deny: exit %d, stderr %q; want exit 3 and no error", code, errOut)
	}
	if !strings.HasPrefix(out, "deny\n") {
		t.Errorf("deny output = %q", out)
	}
	wantLine(t, out, "reason", "db.example.internal is denied")

	code, out, _ = invokeCLI(t, "", append([]string{"policy", "check", "--provisioner", "web", "--san", "db.example.internal", "--json"}, admin...)...)
	var d struct {
		Allowed bool   `json:"allowed"`
		Rule    string `json:"rule"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != exitChecked || d.Allowed || d.Rule == "" {
		t.Errorf("deny --json: exit %d, output %q (%v)", code, out, err)
	}

	code, _, errOut = invokeCLI(t, "", append([]string{"policy", "check", "--san", "x.example.internal"}, admin...)...)
	if code != 2 || !strings.Contains(errOut, "--provisioner is required") {
		t.Errorf("missing --provisioner: exit %d, stderr %q", code, errOut)
	}
}

func TestAPIErrorIsOneLineExitOne(t *testing.T) {
	clearConnectEnv(t)
	ca := newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, "not_found", `no provisioner "web"`)
	}))
	code, out, errOut := invokeCLI(t, "", append([]string{"provisioner", "show", "web"}, adminArgs(t, ca)...)...)
	if code != 1 || out != "" || errOut != "meshpki: no provisioner \"web\" (not_found, HTTP 404)\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTokenCreatePrintsTokenAloneOnLastLine(t *testing.T) {
	clearConnectEnv(t)
	var (
		mu  sync.Mutex
		got client.TokenRequest
	)
	ca := newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/tokens" {
			writeAPIError(w, http.StatusNotFound, "not_found", r.URL.Path)
			return
		}
		mu.Lock()
		json.NewDecoder(r.Body).Decode(&got)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"eyJ.secret.token","id":"9a1f","expires_at":%q,"provisioner":"web"}`,
			time.Now().Add(5*time.Minute+30*time.Second).UTC().Format(time.RFC3339))
	}))
	code, out, errOut := invokeCLI(t, "", append([]string{"token", "create", "web", "--san", "web.example.internal,10.0.0.7", "--ttl", "5m"}, adminArgs(t, ca)...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if out != "eyJ.secret.token\n" {
		t.Errorf("stdout = %q, want the token alone", out)
	}
	if strings.Contains(errOut, "eyJ") || !strings.Contains(errOut, "9a1f") || !strings.Contains(errOut, "expires in 5m") {
		t.Errorf("stderr summary = %q", errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Subject != "web" || strings.Join(got.SANs, " ") != "web.example.internal 10.0.0.7" || got.TTL.Std() != 5*time.Minute {
		t.Errorf("request = %+v", got)
	}
}

func TestProvisionerUpdateSendsPolicyFromFlags(t *testing.T) {
	clearConnectEnv(t)
	var (
		mu           sync.Mutex
		body         map[string]any
		method, path string
	)
	ca := newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		method, path = r.Method, r.URL.Path
		json.Unmarshal(data, &body)
		mu.Unlock()
		w.Write(data)
	}))
	code, out, errOut := invokeCLI(t, "", append([]string{"provisioner", "update", "token", "web",
		"--allow-dns", "*.example.internal", "--allow-dns", "example.internal", "--deny-dns", "db.example.internal",
		"--allow-ip", "10.0.0.0/8", "--allow-uri", "spiffe://example.internal/web/", "--allow-email", "@example.internal",
		"--default-ttl", "24h", "--max-ttl", "168h", "--key-types", "ec-p256,ED25519", "--issuer", "default"}, adminArgs(t, ca)...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if method != http.MethodPut || path != "/v1/provisioners/web" {
		t.Errorf("sent %s %s", method, path)
	}
	want := `{"name":"web","policy":{"allow_dns":["*.example.internal","example.internal"],"allow_email":["@example.internal"],` +
		`"allow_ip":["10.0.0.0/8"],"allow_uri":["spiffe://example.internal/web/"],"default_ttl":"24h0m0s",` +
		`"deny_dns":["db.example.internal"],"issuer":"default","key_types":["ec-p256","ed25519"],"max_ttl":"168h0m0s"},"type":"token"}`
	if gotJSON, _ := json.Marshal(body); string(gotJSON) != want {
		t.Errorf("body = %s\nwant   %s", gotJSON, want)
	}
	wantLine(t, out, "allow dns", "*.example.internal, example.internal")
	wantLine(t, out, "max ttl", "7d")

	code, _, errOut = invokeCLI(t, "", append([]string{"provisioner", "add", "x509", "web"}, adminArgs(t, ca)...)...)
	if code != 2 || !strings.Contains(errOut, `unknown provisioner type "x509"`) {
		t.Errorf("bad type: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = invokeCLI(t, "", append([]string{"provisioner", "add", "token", "web", "--key-types", "dsa"}, adminArgs(t, ca)...)...)
	if code != 2 || !strings.Contains(errOut, `unknown key type "dsa"`) {
		t.Errorf("bad key type: exit %d, stderr %q", code, errOut)
	}
}

func TestCertListFollowsPagesWithAll(t *testing.T) {
	clearConnectEnv(t)
	var mu sync.Mutex
	var queries []string
	notAfter := time.Now().Add(3*time.Hour + 12*time.Minute + 50*time.Second).UTC().Format(time.RFC3339)
	ca := newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		cert := func(serial, status string) string {
			return fmt.Sprintf(`{"serial":%q,"subject":"web","names":["a.example.internal","b.example.internal","c.example.internal"],"provisioner":"web","issuer":"default","not_before":"2026-01-01T00:00:00Z","not_after":%q,"status":%q,"revoked_at":null,"revocation_reason":"","renewed_from":""}`, serial, notAfter, status)
		}
		if r.URL.Query().Get("after") == "" {
			fmt.Fprintf(w, `{"certificates":[%s],"next":"a1"}`, cert("a1", "valid"))
			return
		}
		fmt.Fprintf(w, `{"certificates":[%s],"next":""}`, cert("a2", "revoked"))
	}))
	admin := adminArgs(t, ca)

	code, out, errOut := invokeCLI(t, "", append([]string{"cert", "list", "--status", "valid", "--expiring-within", "72h", "--limit", "1"}, admin...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "a1") || strings.Contains(out, "a2") || !strings.Contains(errOut, "--all") {
		t.Errorf("one page: stdout %q, stderr %q", out, errOut)
	}
	if !strings.Contains(out, "a.example.internal,b.example.internal +1") || !strings.Contains(out, "expires in 3h12m") {
		t.Errorf("row lacks names or expiry:\n%s", out)
	}
	mu.Lock()
	if queries[0] != "expiring_before=72h0m0s&limit=1&status=valid" {
		t.Errorf("query = %q", queries[0])
	}
	mu.Unlock()

	code, out, errOut = invokeCLI(t, "", append([]string{"cert", "list", "--all", "--json"}, admin...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var page client.CertificatePage
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Certificates) != 2 || page.Certificates[1].Serial != "a2" || page.Next != "" {
		t.Errorf("--all --json = %+v", page)
	}
}

// signingCA is a fake CA that signs CSRs on /v1/sign and renews on /v1/renew.
func signingCA(t *testing.T, pki *testPKI, mu *sync.Mutex, gotTTL *string) *fakeCA {
	return newFakeCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CSR   string `json:"csr"`
			Token string `json:"token"`
			TTL   string `json:"ttl"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		mu.Lock()
		*gotTTL = req.TTL
		mu.Unlock()
		var leaf *x509.Certificate
		switch r.URL.Path {
		case "/v1/sign":
			if req.Token != "good-token" {
				writeAPIError(w, http.StatusUnauthorized, "unauthorized", "bad token")
				return
			}
			block, _ := pem.Decode([]byte(req.CSR))
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				writeAPIError(w, http.StatusBadRequest, "bad_csr", "bad CSR")
				return
			}
			leaf = pki.issue(t, csr.PublicKey, csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses, csr.URIs, 24*time.Hour)
		case "/v1/renew":
			if len(r.TLS.PeerCertificates) == 0 {
				writeAPIError(w, http.StatusUnauthorized, "unauthorized", "no certificate")
				return
			}
			old := r.TLS.PeerCertificates[0]
			pub := old.PublicKey
			if req.CSR != "" {
				block, _ := pem.Decode([]byte(req.CSR))
				csr, err := x509.ParseCertificateRequest(block.Bytes)
				if err != nil {
					writeAPIError(w, http.StatusBadRequest, "bad_csr", "bad CSR")
					return
				}
				pub = csr.PublicKey
			}
			leaf = pki.issue(t, pub, old.Subject.CommonName, old.DNSNames, old.IPAddresses, old.URIs, 48*time.Hour)
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(client.SignResponse{
			Certificate: string(pki.chainPEM(leaf)), Serial: store.SerialOf(leaf.SerialNumber),
			NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		})
	}))
}

func TestCertIssueAndRenewWriteFiles(t *testing.T) {
	clearConnectEnv(t)
	pki := newTestPKI(t)
	var (
		mu     sync.Mutex
		gotTTL string
	)
	ca := signingCA(t, pki, &mu, &gotTTL)
	outDir := filepath.Join(t.TempDir(), "tls")

	code, out, errOut := invokeCLI(t, "good-token\n", "cert", "issue", "web", "--san", "web.example.internal,10.0.0.7",
		"--token", "-", "--ca-url", ca.url, "--root", ca.rootFile, "--out", outDir, "--key-type", "ed25519", "--ttl", "12h")
	if code != 0 {
		t.Fatalf("issue: exit %d, stderr %q", code, errOut)
	}
	mu.Lock()
	if gotTTL != "12h0m0s" {
		t.Errorf("ttl sent = %q", gotTTL)
	}
	mu.Unlock()
	certFile, keyFile := filepath.Join(outDir, "web.crt"), filepath.Join(outDir, "web.key")
	wantLine(t, out, "names", "web.example.internal, 10.0.0.7")
	if !strings.Contains(out, "expires in 23h") || strings.Contains(out, "PRIVATE") || strings.Contains(out, "good-token") {
		t.Errorf("issue output:\n%s", out)
	}
	for path, perm := range map[string]os.FileMode{outDir: 0o700, keyFile: 0o600} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != perm {
			t.Errorf("%s: mode %v (%v), want %v", path, info.Mode().Perm(), err, perm)
		}
	}
	cred, err := client.LoadCredentials(certFile, keyFile, nil)
	if err != nil {
		t.Fatalf("issued files do not load: %v", err)
	}
	if kt, _ := keys.TypeOf(cred.Leaf.PublicKey); kt != keys.Ed25519 || len(cred.Certificate) != 2 {
		t.Errorf("issued key type %q, chain of %d", kt, len(cred.Certificate))
	}
	firstKey, _ := os.ReadFile(keyFile)

	// Renew keeping the key.
	code, out, errOut = invokeCLI(t, "", "cert", "renew", "--cert", certFile, "--key", keyFile, "--ca-url", ca.url, "--root", ca.rootFile)
	if code != 0 {
		t.Fatalf("renew: exit %d, stderr %q", code, errOut)
	}
	renewed, err := client.LoadCredentials(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(cred.Leaf.SerialNumber) == 0 || !strings.Contains(out, "expires in 1d23h") {
		t.Errorf("renew did not replace the certificate:\n%s", out)
	}
	if key, _ := os.ReadFile(keyFile); string(key) != string(firstKey) {
		t.Error("renew without --rotate-key changed the key")
	}

	// Renew with a new key of the same type.
	code, out, errOut = invokeCLI(t, "", "cert", "renew", "--cert", certFile, "--key", keyFile, "--ca-url", ca.url, "--root", ca.rootFile, "--rotate-key")
	if code != 0 {
		t.Fatalf("renew --rotate-key: exit %d, stderr %q", code, errOut)
	}
	rotated, err := client.LoadCredentials(certFile, keyFile, nil)
	if err != nil {
		t.Fatalf("rotated files do not match: %v", err)
	}
	if key, _ := os.ReadFile(keyFile); string(key) == string(firstKey) {
		t.Error("--rotate-key kept the old key")
	}
	if kt, _ := keys.TypeOf(rotated.Leaf.PublicKey); kt != keys.Ed25519 || !strings.Contains(out, "new key") {
		t.Errorf("rotated key type %q, output:\n%s", kt, out)
	}

	// A bad token changes nothing.
	before, _ := os.ReadFile(certFile)
	code, _, errOut = invokeCLI(t, "", "cert", "issue", "web", "--san", "web.example.internal", "--token", "bad-token",
		"--ca-url", ca.url, "--root", ca.rootFile, "--out", outDir)
	if code != 1 || errOut != "meshpki: bad token (unauthorized, HTTP 401)\n" {
		t.Errorf("bad token: exit %d, stderr %q", code, errOut)
	}
	if after, _ := os.ReadFile(certFile); string(after) != string(before) {
		t.Error("a refused issue overwrote the certificate")
	}
}

func TestCertIssueUsageErrors(t *testing.T) {
	clearConnectEnv(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no name", []string{"cert", "issue", "--san", "a.example"}, "missing NAME"},
		{"no san", []string{"cert", "issue", "web", "--token", "t", "--out", "x"}, "--san is required"},
		{"bad san", []string{"cert", "issue", "web", "--san", "bad name!", "--token", "t", "--out", "x"}, "not a valid DNS name"},
		{"bad key type", []string{"cert", "issue", "web", "--san", "a.example", "--token", "t", "--out", "x", "--key-type", "rsa-1024"}, "unknown key type"},
		{"path in name", []string{"cert", "issue", "../web", "--san", "a.example", "--token", "t", "--out", "x"}, "cannot be a file name"},
		{"bad serial", []string{"cert", "revoke", "xyz", "--data", "d"}, `serial "xyz" is not hexadecimal`},
		{"bad reason", []string{"cert", "revoke", "5f0c", "--reason", "bored", "--data", "d"}, `--reason "bored"`},
		{"bad status", []string{"cert", "list", "--status", "new", "--data", "d"}, `--status "new"`},
		{"bad duration", []string{"cert", "list", "--expiring-within", "3 days"}, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := invokeCLI(t, "", tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tt.wantErr)
			}
		})
	}
}

func TestNormalizeSerial(t *testing.T) {
	tests := map[string]store.Serial{
		"5f0c":          "5f0c",
		"5F:0C":         "5f0c",
		"00:5f:0c":      "5f0c",
		"0x5F0C":        "5f0c",
		" 005f0c\n":     "5f0c",
		"1000000000000": "1000000000000",
	}
	for in, want := range tests {
		if got, err := normalizeSerial(in); err != nil || got != want {
			t.Errorf("normalizeSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "00", "xyz", "5f-0c"} {
		if _, err := normalizeSerial(bad); err == nil {
			t.Errorf("normalizeSerial(%q) succeeded", bad)
		}
	}
}

func TestCertRenewRefusesExpiredCertificate(t *testing.T) {
	clearConnectEnv(t)
	pki := newTestPKI(t)
	key := newTestKey(t)
	leaf := pki.issue(t, key.Public(), "web", []string{"web.example.internal"}, nil, nil, -30*time.Minute)
	certFile, keyFile := writeCredential(t, t.TempDir(), "web", pki.chainPEM(leaf), key)
	code, _, errOut := invokeCLI(t, "", "cert", "renew", "--cert", certFile, "--key", keyFile, "--ca-url", "https://127.0.0.1:1", "--root", pki.rootFile)
	if code != 1 || !strings.Contains(errOut, "web.crt expired 30m") || !strings.Contains(errOut, "ago: an expired certificate cannot renew itself") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

package cli

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// invokeCLI runs the command line with args and stdin and returns the exit
// code and what it printed.
func invokeCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// clearConnectEnv keeps the caller's environment out of a test.
func clearConnectEnv(t *testing.T) {
	t.Setenv(envCAURL, "")
	t.Setenv(envRoot, "")
	t.Setenv(StoreEnv, "")
	t.Setenv(keys.PassphraseEnv, "")
	os.Unsetenv(keys.PassphraseEnv) // ResolvePassphrase rejects a set but empty value
}

// testPKI is a root CA that signs leaves for tests.
type testPKI struct {
	key      *ecdsa.PrivateKey
	root     *x509.Certificate
	rootPEM  []byte
	rootFile string

	mu     sync.Mutex // guards serial; fake CAs issue from handler goroutines
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Root", Organization: []string{"meshpki tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{key: key, root: root, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 0x5f0c00}
	p.rootFile = filepath.Join(t.TempDir(), "root.crt")
	writeTestFile(t, p.rootFile, p.rootPEM, 0o644)
	return p
}

// issue signs a leaf for pub, valid from an hour ago for lifetime from now.
func (p *testPKI) issue(t *testing.T, pub crypto.PublicKey, cn string, dns []string, ips []net.IP, uris []*url.URL, lifetime time.Duration) *x509.Certificate {
	t.Helper()
	p.mu.Lock()
	p.serial++
	serial := p.serial
	p.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		URIs:         uris,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, pub, p.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// chainPEM is a leaf followed by the root, PEM.
func (p *testPKI) chainPEM(leaf *x509.Certificate) []byte {
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), p.rootPEM...)
}

// fakeCA is an HTTPS server standing in for the CA's API. It asks for, but
// does not require, a client certificate.
type fakeCA struct {
	srv      *httptest.Server
	url      string
	rootFile string // trusts the fake's TLS certificate
}

func newFakeCA(t *testing.T, h http.Handler) *fakeCA {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rootFile := filepath.Join(t.TempDir(), "fake-ca-root.crt")
	writeTestFile(t, rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return &fakeCA{srv: srv, url: srv.URL, rootFile: rootFile}
}

// writeCredential writes a certificate chain and its plain key to dir.
func writeCredential(t *testing.T, dir, name string, chainPEM []byte, key crypto.Signer) (certFile, keyFile string) {
	t.Helper()
	keyPEM, err := keys.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeTestFile(t, certFile, chainPEM, 0o644)
	writeTestFile(t, keyFile, keyPEM, 0o600)
	return certFile, keyFile
}

func writeTestFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/agent"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/servertest"
)

// nodePKI is an organisation's own CA that issues node certificates.
type nodePKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newNodePKI(t *testing.T, cn string) *nodePKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &nodePKI{cert: cert, key: key}
}

// issue writes a node certificate and key to dir and returns their paths.
func (p *nodePKI) issue(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn + ".nodes.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keys.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestAgentX509PoPAttestation(t *testing.T) {
	nodes := newNodePKI(t, "Node CA")
	roots := x509.NewCertPool()
	roots.AddCert(nodes.cert)
	f := newFixture(t)
	f.in.Stop()
	f.in = servertest.Start(t, servertest.Options{DataDir: f.in.DataDir, Listen: f.listen, X509PoPRoots: roots})
	dir := t.TempDir()
	certFile, keyFile := nodes.issue(t, dir, "web-1")

	// An entry for every node whose certificate says CN=web-1.
	f.entry(t, "spiffe://"+td+"/app/by-cn", "x509pop:subject:cn:web-1", uidSelector())
	fp := sha256.Sum256(nodes.cert.Raw)
	f.entry(t, "spiffe://"+td+"/app/by-ca", "x509pop:ca:fingerprint:"+hex.EncodeToString(fp[:]), uidSelector())

	pw := filepath.Join(dir, "pass")
	if err := os.WriteFile(pw, []byte("x509pop-agent-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	a, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, X509PoPCert: certFile, X509PoPKey: keyFile,
		Socket: f.sock, DataDir: f.dir, PasswordFile: pw, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready")
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Status().SVIDs != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("x509pop node holds %+v", a.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := a.Status(); !strings.HasPrefix(st.NodeID, "spiffe://"+td+"/node/x509pop/") {
		t.Fatalf("node ID %s", st.NodeID)
	}

	// A certificate from another CA is refused.
	stranger := newNodePKI(t, "Other CA")
	sc, sk := stranger.issue(t, dir, "web-2")
	b, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, X509PoPCert: sc, X509PoPKey: sk,
		Socket: filepath.Join(dir, "b.sock"), DataDir: filepath.Join(dir, "b"), PasswordFile: pw, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bcancel()
	if err := b.Run(bctx); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("node certificate from another CA: %v", err)
	}
	// The right certificate with the wrong key is refused.
	_, wrongKey := nodes.issue(t, dir, "web-3")
	c, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, X509PoPCert: certFile, X509PoPKey: wrongKey,
		Socket: filepath.Join(dir, "c.sock"), DataDir: filepath.Join(dir, "c"), PasswordFile: pw, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(bctx); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("x509pop with the wrong key: %v", err)
	}
}

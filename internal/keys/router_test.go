package keys_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

func newRouter(t *testing.T) *keys.Router {
	t.Helper()
	r := keys.NewRouter(keys.NewFastFileBackend(t.TempDir(), []byte("file passphrase")))
	t.Cleanup(func() { r.Close() })
	return r
}

// selfSign makes a certificate with s and checks its signature, as a CA
// signing an intermediate does.
func selfSign(t *testing.T, s crypto.Signer) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hsm test"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatalf("sign with the HSM key: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || cert.CheckSignatureFrom(cert) != nil {
		t.Fatalf("the HSM's signature does not verify: %v", err)
	}
}

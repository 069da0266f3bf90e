package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
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

// testMACKey generates the HMAC key at uri and checks what it computes.
func testMACKey(t *testing.T, uri string) {
	t.Helper()
	ctx := context.Background()
	r := newRouter(t)
	ref, err := r.CreateMACAt(ctx, uri, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateMACAt(ctx, uri, true); !errors.Is(err, fs.ErrExist) {
		t.Errorf("generated twice: %v", err)
	}
	m, err := r.LoadMAC(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.MAC([]byte("payload"))
	if err != nil || len(a) != 32 {
		t.Fatalf("MAC: %x, %v", a, err)
	}
	if b, _ := m.MAC([]byte("payload")); !bytes.Equal(a, b) {
		t.Error("two MACs of one payload differ")
	}
	if c, _ := m.MAC([]byte("other")); bytes.Equal(a, c) {
		t.Error("two payloads have one MAC")
	}
	again, err := newRouter(t).LoadMAC(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := again.MAC([]byte("payload")); err != nil || !bytes.Equal(a, b) {
		t.Errorf("a fresh router computes another MAC: %v", err)
	}
	if _, err := newRouter(t).CreateMACAt(ctx, ref, false); err != nil {
		t.Errorf("use the existing key: %v", err)
	}
}

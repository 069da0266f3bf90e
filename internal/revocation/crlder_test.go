package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// testIssuer makes a self-signed CA certificate for key.
func testIssuer(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CRL test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// encodeCRL's CRLs parse with crypto/x509 into what was asked, and their
// signatures verify, for every key type the CA uses.
func TestEncodeCRLParses(t *testing.T) {
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	entries := []store.RevokedEntry{
		{Serial: "1", RevokedAt: at, Reason: 0},
		{Serial: "ff", RevokedAt: at.Add(time.Second), Reason: 1},
		{Serial: "80000000000000000000000000000001", RevokedAt: at, Reason: 4},
		{Serial: "7fffffffffffffffffffffffffffffffffffffff", RevokedAt: time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC), Reason: 10},
		{Serial: "abc", RevokedAt: at, Reason: 5},
	}
	for name, key := range map[string]crypto.Signer{"p256": ec256, "p384": ec384, "ed25519": ed, "rsa": rsaKey} {
		issuer := testIssuer(t, key)
		for _, n := range []int{0, len(entries)} {
			e := &crlEntries{}
			for _, r := range entries[:n] {
				if err := e.add(r); err != nil {
					t.Fatal(err)
				}
			}
			der, err := encodeCRL(crlSpec{issuer: issuer, signer: key, number: 1733480000123456, thisUpdate: at, nextUpdate: at.Add(24 * time.Hour),
				distributionPoint: "http://ca.example/crl/default/1/0", userOnly: true}, e)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatalf("%s, %d entries: parse: %v", name, n, err)
			}
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				t.Fatalf("%s: signature: %v", name, err)
			}
			if crl.Number.Int64() != 1733480000123456 || !crl.ThisUpdate.Equal(at) || !crl.NextUpdate.Equal(at.Add(24*time.Hour)) || len(crl.RevokedCertificateEntries) != n {
				t.Fatalf("%s: %+v", name, crl)
			}
			for i, got := range crl.RevokedCertificateEntries {
				want := entries[i]
				if got.SerialNumber.Text(16) != string(want.Serial) || !got.RevocationTime.Equal(want.RevokedAt) || got.ReasonCode != want.Reason {
					t.Errorf("%s: entry %d: got %s %v %d, want %+v", name, i, got.SerialNumber.Text(16), got.RevocationTime, got.ReasonCode, want)
				}
			}
		}
	}
}

func TestSerialDER(t *testing.T) {
	for hex, want := range map[string][]byte{"1": {1}, "ff": {0, 0xff}, "7f": {0x7f}, "100": {1, 0}, "0080": {0, 0x80}, "abc": {0x0a, 0xbc}} {
		got, err := serialDER(hex)
		if err != nil || string(got) != string(want) {
			t.Errorf("serialDER(%q) = %x, %v; want %x", hex, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "00", "xyz", "1234567890123456789012345678901234567890a"} {
		if _, err := serialDER(bad); err == nil {
			t.Errorf("serialDER(%q) accepted", bad)
		}
	}
}

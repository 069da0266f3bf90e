package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	legoapi "github.com/go-acme/lego/v5/acme/api"

	"github.com/meshpki/meshpki/internal/store"
)

// TestCertIDMatchesLego checks the RFC 9773 certificate id against lego's,
// for serials with and without a leading zero octet, and that parseCertID
// reads it back.
func TestCertIDMatchesLego(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, serial := range []*big.Int{big.NewInt(1), big.NewInt(0x80), new(big.Int).Lsh(big.NewInt(0xff), 120), new(big.Int).Lsh(big.NewInt(0x7f), 120)} {
		tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			AuthorityKeyId: []byte{1, 2, 3, 4}, SubjectKeyId: []byte{5, 6}, DNSNames: []string{"a.test"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		want, err := legoapi.MakeARICertID(cert)
		if err != nil {
			t.Fatal(err)
		}
		if got := certID(cert); got != want {
			t.Errorf("serial %x: certID %s, lego %s", serial, got, want)
		}
		gotSerial, aki, ok := parseCertID(want)
		if !ok || gotSerial != store.SerialOf(serial) || string(aki) != string(cert.AuthorityKeyId) {
			t.Errorf("parseCertID(%s) = %s %x %v", want, gotSerial, aki, ok)
		}
	}
	for _, bad := range []string{"", ".", "AQID", "AQID.", ".AQID", "AQID.gA", "AQID.AA", "!!.AQ"} {
		if _, _, ok := parseCertID(bad); ok {
			t.Errorf("parseCertID(%q) accepted", bad)
		}
	}
}

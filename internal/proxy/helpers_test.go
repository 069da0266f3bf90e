package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// trustDomain is a test CA for one SPIFFE trust domain.
type trustDomain struct {
	td   spiffeid.TrustDomain
	root *x509.Certificate
	key  crypto.Signer
}

var serial atomic.Int64

func newTrustDomain(t testing.TB, name string) *trustDomain {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name + " root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: name}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &trustDomain{td: spiffeid.RequireTrustDomainFromString(name), root: root, key: key}
}

// svid issues an X509-SVID for path (or, with dns, a certificate with that
// DNS name and no SPIFFE ID) valid from notBefore to notAfter.
func (d *trustDomain) svid(t testing.TB, path, dns string, notBefore, notAfter time.Time) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if path != "" {
		tmpl.URIs = []*url.URL{{Scheme: "spiffe", Host: d.td.Name(), Path: path}}
	}
	if dns != "" {
		tmpl.DNSNames = []string{dns}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.root, key.Public(), d.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{leaf}, key
}

// identity is a held identity for path in d, trusting the given domains.
func (d *trustDomain) identity(t testing.TB, path string, trusts ...*trustDomain) *Holder {
	t.Helper()
	chain, key := d.svid(t, path, "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	bundles := map[spiffeid.TrustDomain][]*x509.Certificate{d.td: {d.root}}
	for _, o := range trusts {
		bundles[o.td] = []*x509.Certificate{o.root}
	}
	id, err := NewIdentity(chain, key, bundles)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder()
	h.Store(id)
	return h
}

package monitor

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A leaf whose OCSP responder says revoked gets the revoked finding; one
// whose CRL lists it too; a responder that cannot be reached gives an info
// finding, not silence; answers are cached.
func TestRevocationCheck(t *testing.T) {
	p := newPKI(t)
	var (
		revoked  atomic.Bool
		requests atomic.Int64
	)
	var crlDER []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path == "/crl" {
			_, _ = w.Write(crlDER)
			return
		}
		body := make([]byte, 4096)
		n, _ := r.Body.Read(body)
		req, err := ocsp.ParseRequest(body[:n])
		if err != nil {
			http.Error(w, "bad", 400)
			return
		}
		status := ocsp.Good
		if revoked.Load() {
			status = ocsp.Revoked
		}
		resp, err := ocsp.CreateResponse(p.inter, p.inter, ocsp.Response{Status: status, SerialNumber: req.SerialNumber,
			ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), RevokedAt: time.Now().Add(-time.Hour),
			RevocationReason: ocsp.KeyCompromise}, p.interKey)
		if err != nil {
			t.Error(err)
		}
		_, _ = w.Write(resp)
	}))
	defer srv.Close()

	withOCSP, _ := p.leafWith(t, func(c *x509.Certificate) { c.OCSPServer = []string{srv.URL + "/ocsp"} })
	check := func(chain []*x509.Certificate) []Finding {
		pol := &Policy{Roots: p.roots, Revocation: &Revocation{}}
		var out []Finding
		for _, f := range pol.Check(chain, Source{}) {
			if f.Check == CheckRevoked {
				out = append(out, f)
			}
		}
		return out
	}
	if got := check(withOCSP); len(got) != 0 {
		t.Fatalf("good: %+v", got)
	}
	revoked.Store(true)
	got := check(withOCSP)
	if len(got) != 1 || got[0].Severity != Critical || !strings.Contains(got[0].Message, "keyCompromise") || !strings.Contains(got[0].Message, "OCSP responder") {
		t.Fatalf("revoked: %+v", got)
	}
	// Cached within one Policy's Revocation: the second check of the same
	// leaf asks nothing.
	rev := &Revocation{}
	pol := &Policy{Roots: p.roots, Revocation: rev}
	pol.Check(withOCSP, Source{})
	before := requests.Load()
	pol.Check(withOCSP, Source{})
	if requests.Load() != before {
		t.Fatal("a cached answer was asked again")
	}

	// The CRL: signed by the intermediate, listing the leaf.
	withCRL, _ := p.leafWith(t, func(c *x509.Certificate) { c.CRLDistributionPoints = []string{srv.URL + "/crl"} })
	crlDER, _ = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: withCRL[0].SerialNumber,
			RevocationTime: time.Now().Add(-time.Hour), ReasonCode: 4}}}, p.inter, p.interKey)
	if got := check(withCRL); len(got) != 1 || !strings.Contains(got[0].Message, "superseded") || !strings.Contains(got[0].Message, "its CRL") {
		t.Fatalf("CRL: %+v", got)
	}

	unreachable, _ := p.leafWith(t, func(c *x509.Certificate) { c.OCSPServer = []string{"http://127.0.0.1:1/ocsp"} })
	if got := check(unreachable); len(got) != 1 || got[0].Severity != Info || !strings.Contains(got[0].Message, "could not be checked") {
		t.Fatalf("unreachable: %+v", got)
	}
}

// leafWith is a healthy leaf of p's intermediate, changed by mod first.
func (p *pki) leafWith(t *testing.T, mod func(*x509.Certificate)) ([]*x509.Certificate, any) {
	t.Helper()
	key := ecKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), DNSNames: []string{"svc.test"}, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(60 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	mod(tmpl)
	return []*x509.Certificate{sign(t, tmpl, p.inter, key.Public(), p.interKey), p.inter}, key
}

package crlset

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) leaf(t *testing.T, serial int64) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{"svc.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func (ca testCA) crl(t *testing.T, number int64, nextUpdate time.Time, serials ...int64) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now().Add(-time.Minute), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: nextUpdate, RevokedCertificateEntries: entries}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlServer serves one CRL that tests replace, with an ETag, counting
// full answers and 304s.
type crlServer struct {
	mu        sync.Mutex
	body      []byte
	etag      string
	status    int
	full, not atomic.Int64
}

func (s *crlServer) set(body []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag, s.status = body, etag, 200
}

func (s *crlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 200 {
		http.Error(w, "down", s.status)
		return
	}
	if r.Header.Get("If-None-Match") == s.etag {
		s.not.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full.Add(1)
	w.Header().Set("ETag", s.etag)
	_, _ = w.Write(s.body)
}

func TestSetRefusesWhatItsIssuerRevoked(t *testing.T) {
	ctx := context.Background()
	ca, other := newCA(t, "CA"), newCA(t, "CA") // same name, another key
	leaf, kept := ca.leaf(t, 7), ca.leaf(t, 8)
	srv := &crlServer{}
	srv.set(ca.crl(t, 1, time.Now().Add(time.Hour)), `"1"`)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	forged := &crlServer{}
	forged.set(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: other.crl(t, 99, time.Now().Add(time.Hour), 8)}), `"f"`)
	fs := httptest.NewServer(forged)
	defer fs.Close()

	set := &Set{URLs: []string{hs.URL, fs.URL}}
	select {
	case <-set.Ready():
		t.Fatal("ready before any fetch")
	default:
	}
	if err := set.Update(ctx); err != nil {
		t.Fatal(err)
	}
	<-set.Ready()
	if err := set.Check([]*x509.Certificate{leaf, ca.cert}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	// Serial 8 is on a CRL with the issuer's name but another key: it
	// does not apply.
	if err := set.Check([]*x509.Certificate{kept, ca.cert}); err != nil {
		t.Fatalf("a CRL the issuer did not sign was applied: %v", err)
	}
	srv.set(ca.crl(t, 2, time.Now().Add(time.Hour), 7), `"2"`)
	if err := set.Update(ctx); err != nil {
		t.Fatal(err)
	}
	var re *RevokedError
	if err := set.Check([]*x509.Certificate{leaf, ca.cert}); !errors.As(err, &re) || re.Reason != 1 || !strings.Contains(err.Error(), "keyCompromise") || !strings.Contains(err.Error(), "svc.test") {
		t.Fatalf("after revocation: %v", err)
	}
	// Unchanged: a 304, nothing downloaded again.
	full := srv.full.Load()
	if err := set.Update(ctx); err != nil || srv.full.Load() != full || srv.not.Load() == 0 {
		t.Fatalf("conditional GET: %v, %d full answers (was %d), %d 304s", err, srv.full.Load(), full, srv.not.Load())
	}
	// The server fails, then serves an older CRL: the one held stays.
	srv.mu.Lock()
	srv.status = 503
	srv.mu.Unlock()
	if err := set.Update(ctx); err == nil {
		t.Fatal("a 503 was not reported")
	}
	srv.set(ca.crl(t, 1, time.Now().Add(time.Hour)), `"old"`)
	if err := set.Update(ctx); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("an older CRL: %v", err)
	}
	srv.set([]byte("not a CRL"), `"junk"`)
	if err := set.Update(ctx); err == nil {
		t.Fatal("garbage was accepted")
	}
	if err := set.Check([]*x509.Certificate{leaf, ca.cert}); !errors.As(err, &re) {
		t.Fatalf("the CRL held was dropped: %v", err)
	}
	st := set.Status(time.Now().Add(2 * time.Hour))
	if !st.Ready || st.Lists != 2 || st.Revoked != 2 || st.Stale != 2 || st.Failures != 3 {
		t.Fatalf("status %+v", st)
	}
}

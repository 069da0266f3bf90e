package revocation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// ocspFixture is a CA, a store with one certificate it issued, and an
// OCSP request for it.
func ocspFixture(b testing.TB) (*OCSPResponder, []byte, *x509.Certificate, *x509.Certificate) {
	ctx := context.Background()
	h, err := ca.Init(ctx, b.TempDir(), ca.InitOptions{Name: "Bench", TrustDomain: "bench.test"}, keystest.NewMemory())
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlstore.Open(ctx, "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	is := h.Issuers()[0]
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x5f0c), Subject: pkix.Name{CommonName: "svc"}, DNSNames: []string{"svc.bench.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.Cert, key.Public(), is.Signer)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	if res, err := st.CommitIssuances(ctx, []store.Issuance{{Certificate: &store.Certificate{Serial: store.SerialOf(leaf.SerialNumber),
		Issuer: is.Name, Subject: "svc", Names: []string{"svc.bench.test"}, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, DER: der}}}); err != nil || res[0] != nil {
		b.Fatal(err, res)
	}
	req, err := ocsp.CreateRequest(leaf, is.Cert, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &OCSPResponder{Hierarchy: h, Store: st}, req, leaf, is.Cert
}

// BenchmarkOCSP answers OCSP requests for one certificate from the
// cache: Respond in process, and over plain HTTP on loopback at
// concurrency 16 (responses/s reported).
func BenchmarkOCSP(b *testing.B) {
	o, req, leaf, issuer := ocspFixture(b)
	first := o.Respond(context.Background(), req)
	if r, err := ocsp.ParseResponseForCert(first, leaf, issuer); err != nil || r.Status != ocsp.Good {
		b.Fatalf("%v %+v", err, r)
	}
	b.Run("respond", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = o.Respond(context.Background(), req)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "responses/s")
	})
	b.Run("http-c16", func(b *testing.B) {
		srv := httptest.NewServer(o)
		defer srv.Close()
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					resp, err := c.Post(srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "responses/s")
	})
}

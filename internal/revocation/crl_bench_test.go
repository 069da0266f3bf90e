package revocation

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
	"golang.org/x/crypto/ocsp"
)

// benchCRLSize is how many revoked certificates BenchmarkCRL seeds:
// 1,000,000 unless MESHPKI_BENCH_CRL says otherwise.
func benchCRLSize() int {
	if n, err := strconv.Atoi(os.Getenv("MESHPKI_BENCH_CRL")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// BenchmarkCRL builds and signs the CRL of one intermediate generation
// with benchCRLSize revoked, unexpired certificates (P-256 issuer):
// "encode-sign" from entries in memory, "build" the whole build from the
// SQLite store (read through the covering index, encode the shards and
// the full CRL, sign each, write them to the store).
func BenchmarkCRL(b *testing.B) {
	ctx := context.Background()
	n := benchCRLSize()
	h := newHierarchy(b)
	iss := h.Issuers()[0]
	st, err := sqlstore.Open(ctx, "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	now := time.Now()
	start := time.Now()
	entries := make([]store.RevokedEntry, 0, n)
	for lo := 0; lo < n; lo += 5000 {
		items := make([]store.Issuance, 0, 5000)
		for i := lo; i < min(lo+5000, n); i++ {
			// 128-bit serials like the CA's, revoked over the last month.
			serial := store.Serial(fmt.Sprintf("%x%016x", 1<<62+i, uint64(i)*0x9e3779b97f4a7c15))
			e := store.RevokedEntry{Serial: serial, RevokedAt: now.Add(-time.Duration(i%720) * time.Hour).Truncate(time.Second), Reason: i % 6, Shard: i % 16}
			entries = append(entries, e)
			items = append(items, store.Issuance{Certificate: &store.Certificate{Serial: serial, Issuer: iss.Name, IssuerGeneration: iss.Generation,
				CRLShard: e.Shard, Subject: "svc", NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(90 * 24 * time.Hour), DER: []byte{0x30, 0},
				Status: store.StatusRevoked, RevokedAt: e.RevokedAt, RevocationReason: e.Reason, CreatedAt: now}})
		}
		results, err := st.CommitIssuances(ctx, items)
		if err != nil || slices.ContainsFunc(results, func(e error) bool { return e != nil }) {
			b.Fatal(err, results)
		}
	}
	b.Logf("seeded %d revoked certificates in %s", n, time.Since(start).Round(time.Second))

	b.Run("encode-sign", func(b *testing.B) {
		spec := crlSpec{issuer: iss.Cert, signer: iss.Signer, thisUpdate: now, nextUpdate: now.Add(24 * time.Hour)}
		var size int
		for i := 0; b.Loop(); i++ {
			e := &crlEntries{}
			for _, r := range entries {
				if err := e.add(r); err != nil {
					b.Fatal(err)
				}
			}
			spec.number = int64(i + 1)
			der, err := encodeCRL(spec, e)
			if err != nil {
				b.Fatal(err)
			}
			size = len(der)
		}
		b.ReportMetric(float64(size)/1e6, "MB")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/crl")
	})
	b.Run("build", func(b *testing.B) {
		p := &CRLPublisher{Hierarchy: h, Store: st, BaseURL: "http://ca.bench.test", ShardEntries: n}
		for i := 0; b.Loop(); i++ {
			ok, err := p.buildGeneration(ctx, iss, int64(i+1), map[string]*PublishedCRL{}, time.Now().Add(time.Duration(i)*time.Second))
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/crl")
		c, err := st.GetCRL(ctx, GenerationScope(iss.Name, iss.Generation))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(c.DER))/1e6, "MB")
	})
}

// BenchmarkRevocationVisible measures how long after Service.Revoke
// returns the revocation shows in the published CRLs (the publisher
// running as the server runs it, told of the revocation): its shard's
// (what the certificate's CDP names) and the generation's full one, and in
// OCSP, with MESHPKI_BENCH_VISIBLE (default 10,000) certificates already
// on the CRL over 16 shards. Each poll parses the CRLs, which the
// figures include.
func BenchmarkRevocationVisible(b *testing.B) {
	ctx := context.Background()
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("MESHPKI_BENCH_VISIBLE")); err == nil && v >= 0 {
		n = v
	}
	o, _, _, _ := ocspFixture(b)
	h, st := o.Hierarchy, o.Store.(*sqlstore.Store)
	iss := h.Issuers()[0]
	now := time.Now()
	for lo := 0; lo < n; lo += 5000 {
		var items []store.Issuance
		for i := lo; i < min(lo+5000, n); i++ {
			items = append(items, store.Issuance{Certificate: &store.Certificate{Serial: store.Serial(fmt.Sprintf("%x", 1<<60+i)), Issuer: iss.Name,
				IssuerGeneration: iss.Generation, CRLShard: i % 16, Subject: "svc", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour), DER: []byte{0x30, 0},
				Status: store.StatusRevoked, RevokedAt: now, CreatedAt: now}})
		}
		if _, err := st.CommitIssuances(ctx, items); err != nil {
			b.Fatal(err)
		}
	}
	p := &CRLPublisher{Hierarchy: h, Store: st}
	svc := New(st, &refusals{}, nil)
	svc.OnRevoked(o.Forget)
	svc.OnRevoked(p.Revoked)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Run(runCtx)
	for { // the first build, of everything, before measuring
		if _, _, err := p.Find(""); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var crlTotal, shardTotal, ocspTotal time.Duration
	for i := 0; b.Loop(); i++ {
		sn := recordLeaf(b, st, iss, 0, now.Add(time.Hour))
		serial, _ := new(big.Int).SetString(string(sn), 16)
		req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, iss.Cert, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := svc.Revoke(ctx, Request{Serial: string(sn), Reason: KeyCompromise, Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
		revoked := time.Now()
		resp, err := ocsp.ParseResponse(o.Respond(ctx, req), iss.Cert)
		if err != nil || resp.Status != ocsp.Revoked {
			b.Fatalf("OCSP right after the revocation: %v %+v", err, resp)
		}
		ocspTotal += time.Since(revoked)
		// The shard first (it is built first), then the full CRL, each
		// polled on its own so that parsing one does not delay the other.
		waitListed := func(path string) {
			for {
				if c, _, err := p.Find(path); err == nil && crlHas(b, c.DER, serial) {
					return
				}
				if time.Since(revoked) > 60*time.Second {
					b.Fatalf("the revocation never reached %q", path)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		waitListed("default/1/0")
		shardTotal += time.Since(revoked)
		waitListed("")
		crlTotal += time.Since(revoked)
	}
	b.ReportMetric(shardTotal.Seconds()*1000/float64(b.N), "ms-to-shard")
	b.ReportMetric(crlTotal.Seconds()*1000/float64(b.N), "ms-to-full-crl")
	b.ReportMetric(ocspTotal.Seconds()*1000/float64(b.N), "ms-to-ocsp")
}

func crlHas(b *testing.B, der []byte, serial *big.Int) bool {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

package revocation

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
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
		p := &CRLPublisher{Hierarchy: h, Store: st, BaseURL: "http://ca.bench.test", ShardEntries: n, Holder: "bench"}
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

package nodeapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// BenchmarkMintBatch1000 measures server-side X.509-SVID minting: one
// MintX509SVIDs call for 1,000 entries of a node, over the real node API
// (gRPC over mTLS with the node SVID) to a real server on SQLite; each SVID
// is signed, recorded and audited before the reply. CSRs are made before
// the timer starts.
//
//	go test -run '^$' -bench MintBatch1000 -benchtime 5x ./internal/nodeapi
func BenchmarkMintBatch1000(b *testing.B) {
	in := servertest.Start(b, servertest.Options{})
	ctx := context.Background()
	reg := in.Server.Registration()
	node := "spiffe://test.internal/node/bench"
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		e, err := reg.CreateEntry(ctx, store.Entry{SPIFFEID: fmt.Sprintf("spiffe://test.internal/w/%d", i), Parent: node, Selectors: []string{fmt.Sprintf("unix:uid:%d", 1000+i)}}, "bench")
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = e.ID
	}
	c := attestedClient(b, in, node)
	req := &nodeapi.MintRequest{Items: make([]nodeapi.MintItem, n)}
	for i := range req.Items {
		req.Items[i] = nodeapi.MintItem{EntryID: ids[i], CSR: newCSR(b)}
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		resp, err := c.MintX509SVIDs(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Items {
			if r.Error != "" {
				b.Fatal(r.Error)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "svids/s")
}

func newCSR(tb testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// attestedClient attests as node with a join token and returns a client
// presenting the node SVID.
func attestedClient(tb testing.TB, in *servertest.Instance, node string) *nodeapi.Client {
	return in.AttestNode(tb, node)
}

package nodeapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/provisioner"
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

// BenchmarkDeclaredIssuance measures declared certificates over the node
// API: 16 concurrent SignDeclared calls from one node through a node
// provisioner (the grant and its policy decided at each issuance, then
// signed, recorded and audited), against the same node minting one
// X.509-SVID per MintX509SVIDs call at the same concurrency, in the same
// run on the same server. CSRs are made before the timer starts.
//
//	go test -run '^$' -bench DeclaredIssuance -benchtime 3000x -count 2 ./internal/nodeapi
func BenchmarkDeclaredIssuance(b *testing.B) {
	in := servertest.Start(b, servertest.Options{})
	ctx := context.Background()
	node := "spiffe://test.internal/node/bench/1"
	if _, err := in.Server.Provisioners().Add(ctx, provisioner.Change{Provisioner: store.Provisioner{Name: "hosts", Type: store.ProvisionerNode,
		Nodes: []string{"spiffe://test.internal/node/bench/*"}, Policy: policy.Policy{AllowDNS: []string{"*.bench.internal"}}}, Actor: "bench"}); err != nil {
		b.Fatal(err)
	}
	e, err := in.Server.Registration().CreateEntry(ctx, store.Entry{SPIFFEID: "spiffe://test.internal/w/bench", Parent: node, Selectors: []string{"unix:uid:1000"}}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	c := attestedClient(b, in, node)
	run := func(b *testing.B, makeCSR func(testing.TB) []byte, call func(csr []byte) error) {
		csrs := make(chan []byte, b.N)
		for range b.N {
			csrs <- makeCSR(b)
		}
		close(csrs)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for csr := range csrs {
					if err := call(csr); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
	}
	b.Run("declared", func(b *testing.B) {
		run(b, func(tb testing.TB) []byte { return namedCSR(tb, "", "web.bench.internal") }, func(csr []byte) error {
			_, err := c.SignDeclared(ctx, &nodeapi.DeclaredRequest{Provisioner: "hosts", CSR: csr})
			return err
		})
	})
	b.Run("svid", func(b *testing.B) {
		run(b, newCSR, func(csr []byte) error {
			resp, err := c.MintX509SVIDs(ctx, &nodeapi.MintRequest{Items: []nodeapi.MintItem{{EntryID: e.ID, CSR: csr}}})
			if err == nil && resp.Items[0].Error != "" {
				err = fmt.Errorf("%s", resp.Items[0].Error)
			}
			return err
		})
	})
}

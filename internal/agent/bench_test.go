package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshpki/meshpki/internal/client"
)

// BenchmarkAgent measures, against a real server and agent:
//
//   - fetch-reused: FetchX509SVID over the Workload API socket with one
//     go-spiffe client, cached SVID (p99 in µs);
//
//   - fetch-new-client: the same with a new client per fetch;
//
//   - entry-to-workload: from 'entry create' through the admin API to the
//     new SVID arriving at a workload watching with WatchX509Context (p50 and
//     p99 in ms).
//
//     go test -run '^$' -bench Agent -benchtime 2000x ./internal/agent
func BenchmarkAgent(b *testing.B) {
	f := newFixture(b)
	node := "spiffe://" + td + "/node/bench"
	f.entry(b, "spiffe://"+td+"/app/web", node, uidSelector())
	f.startAgent(b, f.joinToken(b, node))
	f.waitFetch(b, "spiffe://"+td+"/app/web")
	ctx := context.Background()
	addr := workloadapi.WithAddr("unix://" + f.sock)

	b.Run("fetch-reused", func(b *testing.B) {
		c, err := workloadapi.New(ctx, addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if _, err := c.FetchX509SVID(ctx); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(t0)
		}
		reportLatency(b, lat, time.Microsecond, "µs")
	})
	b.Run("fetch-new-client", func(b *testing.B) {
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if _, err := workloadapi.FetchX509SVID(ctx, addr); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(t0)
		}
		reportLatency(b, lat, time.Microsecond, "µs")
	})
	b.Run("entry-to-workload", func(b *testing.B) {
		admin, err := client.New(client.Config{URL: f.in.URL, RootsPEM: f.in.RootPEM, Certificate: &f.in.AdminCert})
		if err != nil {
			b.Fatal(err)
		}
		c, err := workloadapi.New(ctx, addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		updates := make(chan *workloadapi.X509Context, 1024)
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = c.WatchX509Context(wctx, watcher{updates}) }()
		initial := len((<-updates).SVIDs)
		held := initial
		n := min(b.N, 200) // each creates an entry: keep the store small
		lat := make([]time.Duration, 0, n)
		b.ResetTimer()
		for i := range n {
			t0 := time.Now()
			_, err := admin.CreateEntry(ctx, client.EntryRequest{SPIFFEID: fmt.Sprintf("spiffe://%s/bench/%d-%d", td, b.N, i), Parent: node, Selectors: []string{uidSelector()}})
			if err != nil {
				b.Fatal(err)
			}
			for held < initial+i+1 { // wait for the new SVID
				select {
				case u := <-updates:
					held = len(u.SVIDs)
				case <-time.After(10 * time.Second):
					b.Fatal("the new SVID did not arrive in 10s")
				}
			}
			lat = append(lat, time.Since(t0))
		}
		reportLatency(b, lat, time.Millisecond, "ms")
	})
}

func reportLatency(b *testing.B, lat []time.Duration, unit time.Duration, name string) {
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/float64(unit), "p50-"+name)
	b.ReportMetric(float64(lat[len(lat)*99/100])/float64(unit), "p99-"+name)
	b.ReportMetric(0, "ns/op")
}

package workload

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// benchServer serves one SVID for this process among 100 for other uids.
func benchServer(b *testing.B) *Server {
	src := newFakeSource(b)
	for i := range 100 {
		src.add(b, "other-"+string(rune('a'+i%26)), spiffeIDOf("other"), otherUIDSelector())
	}
	src.add(b, "web", spiffeIDOf("web"), myUIDSelector, myGIDSelector)
	return startServer(b, src)
}

// reportLatency reports the p50 and p99 of the samples in microseconds.
func reportLatency(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

func BenchmarkFetchX509SVID(b *testing.B) {
	srv := benchServer(b)
	ctx := context.Background()
	c := newClient(b, srv)
	if _, err := c.FetchX509SVID(ctx); err != nil { // connect, warm the caches
		b.Fatal(err)
	}
	samples := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := c.FetchX509SVID(ctx); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportLatency(b, samples)
}

func BenchmarkFetchX509SVIDNewClient(b *testing.B) {
	srv := benchServer(b)
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		c, err := workloadapi.New(ctx, workloadapi.WithAddr(srv.Addr()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.FetchX509SVID(ctx); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		c.Close()
	}
	reportLatency(b, samples)
}

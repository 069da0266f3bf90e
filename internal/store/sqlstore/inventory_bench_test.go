package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/storetest"
)

// BenchmarkInventoryQueries measures the inventory's listings on
// 1,000,000 certificates (half issued, half scanned) in SQLite: the first
// page of what expires within 14 days, a page further on, and lookup by
// name. Each reports its p50 and p99 latency.
func BenchmarkInventoryQueries(b *testing.B) {
	st := mustOpen(b, "", b.TempDir())
	now := time.Now()
	n := storetest.BenchInventorySize()
	storetest.SeedBenchInventory(b, st, n, now)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	page2 := func() string {
		p, err := st.ListInventory(ctx, store.InventoryFilter{Active: true, ExpiringBefore: now.Add(14 * 24 * time.Hour)})
		if err != nil || p.Next == "" {
			b.Fatal(err, "no second page")
		}
		return p.Next
	}()
	for _, c := range []struct {
		name string
		f    func() store.InventoryFilter
		want func(int) bool
	}{
		{"expiring-within-14d", func() store.InventoryFilter {
			return store.InventoryFilter{Active: true, ExpiringBefore: now.Add(14 * 24 * time.Hour)}
		}, func(got int) bool { return got == 100 }},
		{"expiring-within-14d-page-2", func() store.InventoryFilter {
			return store.InventoryFilter{Active: true, ExpiringBefore: now.Add(14 * 24 * time.Hour), After: page2}
		}, func(got int) bool { return got == 100 }},
		{"by-name", func() store.InventoryFilter {
			i := rng.IntN(n / 2)
			if i%2 == 0 {
				return store.InventoryFilter{Name: fmt.Sprintf("app-%d.example.test", i)}
			}
			return store.InventoryFilter{Name: fmt.Sprintf("svc-%d.example.test", i)}
		}, func(got int) bool { return got == 1 }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				f := c.f()
				t0 := time.Now()
				p, err := st.ListInventory(ctx, f)
				lat = append(lat, time.Since(t0))
				if err != nil || !c.want(len(p.Items)) {
					b.Fatalf("%+v: %d items, %v", f, len(p.Items), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

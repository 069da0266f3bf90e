package monitor

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// benchEndpoints is how many loopback TLS endpoints BenchmarkScan scans.
const benchEndpoints = 5000

// BenchmarkScan scans 5,000 TLS endpoints on loopback, each its own
// listener presenting a leaf and its intermediate, with every check on
// (lint included) at the default concurrency. BenchmarkScan/bare-dialer is
// the limit in the same run: a bare Go TLS dialer doing only the
// handshakes, with the same concurrency, over the same endpoints. Both
// report endpoints/s; docs/BENCHMARKS.md gives the ratio.
func BenchmarkScan(b *testing.B) {
	p := newPKI(b)
	chain, key := p.leaf(b, leafSpec{})
	var targets []Target
	for range benchEndpoints {
		addr := serveTLS(b, chain, key)
		ts, err := ParseTargets([]string{addr}, TargetOptions{SNI: "svc.test"})
		if err != nil {
			b.Fatal(err)
		}
		targets = append(targets, ts...)
	}
	b.Run("meshpki-scan", func(b *testing.B) {
		s := &Scanner{Policy: &Policy{Roots: p.roots, Lint: true}}
		for b.Loop() {
			for _, r := range s.Scan(context.Background(), targets) {
				if r.Error != "" || len(r.Findings) != 0 {
					b.Fatalf("%s: %s %+v", r.Target, r.Error, r.Findings)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(targets))/b.Elapsed().Seconds(), "endpoints/s")
	})
	b.Run("bare-dialer", func(b *testing.B) {
		for b.Loop() {
			bareHandshakes(b, targets, DefaultConcurrency)
		}
		b.ReportMetric(float64(b.N*len(targets))/b.Elapsed().Seconds(), "endpoints/s")
	})
}

// bareHandshakes completes one TLS handshake with each target and nothing
// else.
func bareHandshakes(b *testing.B, targets []Target, workers int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: DefaultTimeout},
				Config: &tls.Config{ServerName: "svc.test", InsecureSkipVerify: true}} //nolint:gosec // the limit, not a check
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
				c, err := d.DialContext(ctx, "tcp", targets[i].Addr)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
}

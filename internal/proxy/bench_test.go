package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
)

// BenchmarkInboundKeepAlive sends small HTTP requests with keep-alive at
// concurrency 16 through an inbound proxy (TCP mode) to an app, all in
// this process: for profiling the proxy's path (go test -cpuprofile); the
// figures to compare are bench/ghostunnel's.
func BenchmarkInboundKeepAlive(b *testing.B) {
	td := newTrustDomain(b, "example.test")
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go srv.Serve(appLn)
	defer srv.Close()
	authz, err := ParseAuthorizer([]string{"spiffe://example.test"})
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{Direction: Inbound, To: appLn.Addr().String(), Holder: td.identity(b, "/ns/api"),
		Authz: authz, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	client := td.identity(b, "/ns/web").Load()
	tr := &http.Transport{MaxIdleConnsPerHost: 16, TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{*client.Certificate},
		InsecureSkipVerify: true}} //nolint:gosec // a benchmark of the proxy
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := "https://" + ln.Addr().String() + "/"
	var wg sync.WaitGroup
	b.ResetTimer()
	per := b.N/16 + 1
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				resp, err := c.Get(url)
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
	b.ReportMetric(float64(per*16)/b.Elapsed().Seconds(), "req/s")
}

package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/server"
)

// benchConcurrency is how many clients run at once.
const benchConcurrency = 16

// BenchmarkACMEOrders measures whole ACME orders per second — newOrder,
// authorization, http-01 validation against a local challenge server,
// finalize, certificate download — by 16 in-process lego clients against a
// real server on SQLite, and, against the same server in the same run,
// direct /v1/sign issuance by 16 clients with one-time tokens:
//
//	go test -run '^$' -bench ACMEOrders -benchtime 2000x ./internal/acme
func BenchmarkACMEOrders(b *testing.B) {
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(server.GCPercent))
	}
	e := newEnv(b, "")

	b.Run("orders-c16", func(b *testing.B) {
		clients := make([]*lego.Client, benchConcurrency)
		for i := range clients {
			u := newUser(b)
			c := e.legoClient(b, "acme", u)
			e.useHTTP01(b, c)
			register(b, c, u)
			clients[i] = c
		}
		run(b, func(worker, i int) error {
			_, err := clients[worker].Certificate.Obtain(context.Background(), certificate.ObtainRequest{
				Domains: []string{fmt.Sprintf("o%d.bench.test", i)}, KeyType: certcrypto.EC256, Bundle: true})
			return err
		}, "orders/s")
		if os.Getenv("MESHPKI_BENCH_ROUTES") != "" {
			e.logRouteLatency(b)
		}
	})

	b.Run("sign-c16", func(b *testing.B) {
		ctx := context.Background()
		if _, err := e.admin.CreateProvisioner(ctx, client.Provisioner{Name: "tokens", Type: "token", Policy: policy.Policy{AllowDNS: []string{".bench.test"}}}); err != nil && !isConflict(err) {
			b.Fatal(err)
		}
		tokens := make([]string, b.N)
		for i := range tokens {
			tok, err := e.admin.CreateToken(ctx, client.TokenRequest{Subject: fmt.Sprintf("s%d.bench.test", i), Provisioner: "tokens"})
			if err != nil {
				b.Fatal(err)
			}
			tokens[i] = tok.Token
		}
		csrs := make([][]byte, benchConcurrency)
		for i := range csrs {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
			if err != nil {
				b.Fatal(err)
			}
			csrs[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		}
		run(b, func(worker, i int) error {
			body, _ := json.Marshal(map[string]string{"csr": string(csrs[worker]), "token": tokens[i]})
			resp, err := e.in.Anonymous.Post(e.in.URL+"/v1/sign", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
				return fmt.Errorf("sign: %s", resp.Status)
			}
			return nil
		}, "certs/s")
	})
}

func isConflict(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// run calls op b.N times from benchConcurrency workers and reports the rate
// under unit and the p99 latency.
func run(b *testing.B, op func(worker, i int) error, unit string) {
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := op(w, i); err != nil {
					failed.Store(err)
					return
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// logRouteLatency logs the mean server-side latency of each ACME route.
func (e *env) logRouteLatency(b *testing.B) {
	resp, err := e.in.Anonymous.Get(e.in.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		for prefix, m := range map[string]map[string]float64{"meshpki_acme_request_duration_seconds_sum{route=\"": sums, "meshpki_acme_request_duration_seconds_count{route=\"": counts} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				route, val, _ := strings.Cut(rest, "\"} ")
				v, _ := strconv.ParseFloat(val, 64)
				m[route] = v
			}
		}
	}
	for route, n := range counts {
		b.Logf("%-14s %6.0f requests, mean %.2f ms", route, n, 1000*sums[route]/n)
	}
}

package api_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/token"
)

// BenchmarkSignPath measures the whole sign path — HTTPS, JSON, token check,
// policy, CSR verify, signing, durable group commit to SQLite and the audit
// append — at concurrency 1 and 16, reporting certificates/s and p99 latency.
// Run it beside BenchmarkRawCrypto to get the ratio in one run:
//
//	go test -run '^$' -bench 'SignPath|RawCrypto' -benchtime 20000x ./internal/api
func BenchmarkSignPath(b *testing.B) {
	// Run with the collector setting 'meshpki server' uses.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(server.GCPercent))
	}
	in := servertest.Start(b, servertest.Options{})
	addProvisioner(b, in, "bench", map[string]any{"allow_dns": []string{"*.bench.internal"}})
	keyring := testKeyring(b, in)
	_, csr := newCSR(b, keys.ECP256, "svc", "svc.bench.internal")
	for _, conc := range []int{1, 16, 64} {
		b.Run(map[int]string{1: "c1", 16: "c16", 64: "c64"}[conc], func(b *testing.B) { signLoad(b, in, keyring, csr, conc) })
	}
}

// signLoad sends b.N sign requests from conc keep-alive connections, each
// with a fresh token from keyring for csr, and reports CPU per
// certificate, certificates/s, p99 latency and the store's average commit
// batch.
func signLoad(b *testing.B, in *servertest.Instance, keyring *token.Keyring, csr string, conc int) {
	tokens := make([]string, b.N)
	now := time.Now()
	for i := range tokens {
		t, err := keyring.Mint(token.Claims{Provisioner: "bench", Subject: "svc", SANs: []string{"svc.bench.internal"},
			Audience: in.Server.URL() + "/v1/sign", Purpose: token.PurposeSign, IssuedAt: now, NotBefore: now, Expiry: now.Add(30 * time.Minute)})
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = t
	}
	batchSum0 := metricValue(b, in, "meshpki_store_commit_batch_size_sum")
	batchCount0 := metricValue(b, in, "meshpki_store_commit_batch_size_count")
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	host := strings.TrimPrefix(in.URL, "https://")
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A lean HTTP/1.1 keep-alive client, like wrk: the load
			// generator shares the 2 cores with the server, so it
			// should cost as little as it can.
			conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: in.Roots})
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			var req bytes.Buffer
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				body := `{"csr":` + strconv.Quote(csr) + `,"token":"` + tokens[i] + `"}`
				req.Reset()
				fmt.Fprintf(&req, "POST /v1/sign HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
				t0 := time.Now()
				if _, err := conn.Write(req.Bytes()); err != nil {
					b.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				latencies[i] = time.Since(t0)
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	// CPU per certificate (server and load generator together) is
	// steadier than certs/s on a shared VM.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/cert")
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "certs/s")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric((metricValue(b, in, "meshpki_store_commit_batch_size_sum")-batchSum0)/
		(metricValue(b, in, "meshpki_store_commit_batch_size_count")-batchCount0), "avg-batch")
}

// BenchmarkRawCrypto is the crypto limit of the sign path on this machine:
// parse and verify a CSR, then x509.CreateCertificate, on every core.
func BenchmarkRawCrypto(b *testing.B) {
	caKey, _ := keys.ECP256.Generate()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	_, csrPEM := newCSR(b, keys.ECP256, "svc", "svc.bench.internal")
	block, _ := pem.Decode([]byte(csrPEM))
	start := time.Now()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				b.Error("csr")
				return
			}
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			tmpl := &x509.Certificate{SerialNumber: serial, DNSNames: csr.DNSNames, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

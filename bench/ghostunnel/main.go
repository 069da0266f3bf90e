// Command proxy-bench measures an mTLS sidecar four ways in one run, over
// the same HTTP app on loopback: plain HTTP to the app, Go's own mTLS
// server in this process (the ceiling: a proxy adds a hop), meshpki proxy
// inbound, and ghostunnel server. For each it runs small requests with
// keep-alive at a fixed concurrency, a new connection per request, and one
// bulk download. run.sh builds the two proxies and runs it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func main() {
	meshpki := flag.String("meshpki", "", "path of the meshpki binary")
	ghostunnel := flag.String("ghostunnel", "", "path of the ghostunnel binary")
	duration := flag.Duration("duration", 5*time.Second, "length of each request measurement")
	concurrency := flag.Int("concurrency", 16, "clients making requests at once")
	bulk := flag.Int64("bulk", 2<<30, "bytes of the bulk download")
	rounds := flag.Int("rounds", 2, "rounds; the targets are measured in turn within each")
	procs := flag.Int("proxy-procs", 0, "GOMAXPROCS of both proxies (0: Go's default, the number of cores)")
	flag.Parse()
	proxyProcs = *procs
	if *meshpki == "" || *ghostunnel == "" {
		fmt.Fprintln(os.Stderr, "usage: proxy-bench -meshpki BIN -ghostunnel BIN")
		os.Exit(2)
	}
	if err := run(*meshpki, *ghostunnel, *duration, *concurrency, *bulk, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "proxy-bench:", err)
		os.Exit(1)
	}
}

// pki is a root and the two SVIDs: the app's side (server) and the
// client's.
type pki struct {
	dir                string
	roots              *x509.CertPool
	client, serverCert tls.Certificate
}

func newPKI(dir string) (*pki, error) {
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: "bench.test"}}}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	p := &pki{dir: dir, roots: x509.NewCertPool()}
	p.roots.AddCert(root)
	issue := func(name, path string, serial int64) (tls.Certificate, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			URIs: []*url.URL{{Scheme: "spiffe", Host: "bench.test", Path: path}}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		for file, block := range map[string]*pem.Block{name + ".pem": {Type: "CERTIFICATE", Bytes: der}, name + ".key": {Type: "PRIVATE KEY", Bytes: keyDER}} {
			if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
				return tls.Certificate{}, err
			}
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
	}
	if p.serverCert, err = issue("server", "/ns/api", 2); err != nil {
		return nil, err
	}
	if p.client, err = issue("client", "/ns/web", 3); err != nil {
		return nil, err
	}
	return p, os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o600)
}

// handler is the app: a small answer, or /bulk?n=BYTES of zeros.
func handler() http.Handler {
	zeros := make([]byte, 256<<10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bulk" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(zeros)))
			if _, err := w.Write(zeros[:k]); err != nil {
				return
			}
			n -= k
		}
	})
}

// proxyProcs is -proxy-procs.
var proxyProcs int

type target struct {
	name string
	url  string
	tls  bool
}

func run(meshpki, ghostunnel string, duration time.Duration, concurrency int, bulk int64, rounds int) error {
	dir, err := os.MkdirTemp("", "proxy-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := newPKI(dir)
	if err != nil {
		return err
	}
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(appLn, handler())
	app := appLn.Addr().String()

	// Go's own mTLS server, in this process.
	goLn, _ := net.Listen("tcp", "127.0.0.1:0")
	goSrv := &http.Server{Handler: handler(), TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.roots}}
	go goSrv.ServeTLS(goLn, "", "")

	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	meshAddr, ghostAddr := free(), free()
	f := func(name string) string { return filepath.Join(dir, name) }
	procs := []*exec.Cmd{
		exec.Command(meshpki, "proxy", "inbound", "--listen", meshAddr, "--to", app, "--allow", "spiffe://bench.test/ns/web",
			"--cert", f("server.pem"), "--key", f("server.key"), "--bundle", f("ca.pem"), "--idle-timeout", "0", "--log-level", "warn"),
		exec.Command(ghostunnel, "server", "--listen", ghostAddr, "--target", app, "--cert", f("server.pem"), "--key", f("server.key"),
			"--cacert", f("ca.pem"), "--allow-uri", "spiffe://bench.test/ns/web", "--quiet=conns"),
	}
	for _, c := range procs {
		c.Stdout, c.Stderr = io.Discard, os.Stderr
		if proxyProcs > 0 {
			c.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(proxyProcs))
		}
		if err := c.Start(); err != nil {
			return err
		}
		defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	}
	for _, a := range []string{meshAddr, ghostAddr} {
		if err := waitListening(a); err != nil {
			return err
		}
	}
	targets := []target{
		{"plain HTTP to the app", "http://" + app, false},
		{"Go mTLS server in process", "https://" + goLn.Addr().String(), true},
		{"meshpki proxy inbound", "https://" + meshAddr, true},
		{"ghostunnel v1.8.4 server", "https://" + ghostAddr, true},
	}
	clientTLS := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.client}, RootCAs: p.roots}

	type row struct {
		keepalive, keepaliveP50, newconn, bulkMBs []float64
	}
	results := make([]row, len(targets))
	for r := range rounds {
		for i, t := range targets {
			tr := &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}
			if t.tls {
				tr.TLSClientConfig = clientTLS
			}
			rate, p50, err := load(tr, t.url+"/", concurrency, duration)
			tr.CloseIdleConnections()
			if err != nil {
				return fmt.Errorf("%s keep-alive: %w", t.name, err)
			}
			results[i].keepalive = append(results[i].keepalive, rate)
			results[i].keepaliveP50 = append(results[i].keepaliveP50, p50)

			nc := &http.Transport{DisableKeepAlives: true}
			if t.tls {
				nc.TLSClientConfig = clientTLS
			}
			rate, _, err = load(nc, t.url+"/", concurrency, duration)
			if err != nil {
				return fmt.Errorf("%s new connections: %w", t.name, err)
			}
			results[i].newconn = append(results[i].newconn, rate)

			bt := &http.Transport{DisableCompression: true}
			if t.tls {
				bt.TLSClientConfig = clientTLS
			}
			mbs, err := download(bt, t.url+"/bulk?n="+strconv.FormatInt(bulk, 10), bulk)
			bt.CloseIdleConnections()
			if err != nil {
				return fmt.Errorf("%s bulk: %w", t.name, err)
			}
			results[i].bulkMBs = append(results[i].bulkMBs, mbs)
			fmt.Fprintf(os.Stderr, "round %d %-28s keep-alive %8.0f req/s (p50 %.3f ms)  new conn %7.0f req/s  bulk %6.0f MB/s\n",
				r+1, t.name, results[i].keepalive[r], results[i].keepaliveP50[r], results[i].newconn[r], mbs)
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "target\tkeep-alive req/s (c%d)\tp50 ms\tnew connection req/s\tbulk MB/s\n", concurrency)
	span := func(v []float64, f string) string {
		return fmt.Sprintf(f+"–"+f, slices.Min(v), slices.Max(v))
	}
	for i, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.name, span(results[i].keepalive, "%.0f"), span(results[i].keepaliveP50, "%.3f"),
			span(results[i].newconn, "%.0f"), span(results[i].bulkMBs, "%.0f"))
	}
	return tw.Flush()
}

func waitListening(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// load runs GETs from concurrency workers for d and returns requests per
// second and the median latency in ms.
func load(tr *http.Transport, u string, concurrency int, d time.Duration) (float64, float64, error) {
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		n        atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(u)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
					return
				}
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, firstErr
	}
	slices.Sort(lat)
	return float64(n.Load()) / elapsed.Seconds(), float64(lat[len(lat)/2].Microseconds()) / 1000, nil
}

// download reads n bytes over one connection and returns MB/s.
func download(tr *http.Transport, u string, n int64) (float64, error) {
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds(), nil
}

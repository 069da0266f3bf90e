// Command ocspbench measures OCSP answers per second from meshpki's
// responder and from CFSSL's ocspserve (v1.6.5, this module's tool
// dependency) in one run on this machine, on the same data: one certificate
// meshpki issued, the same request, and the same pre-signed response (the
// one meshpki signed is what ocspserve serves). Both run as their own
// processes; the load comes from this one over plain HTTP on loopback with
// keep-alive, at a fixed concurrency, each target in turn for each round.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

func main() {
	meshpki := flag.String("meshpki", "", "meshpki binary")
	cfssl := flag.String("cfssl", "", "cfssl binary")
	duration := flag.Duration("duration", 5*time.Second, "load time per target per round")
	rounds := flag.Int("rounds", 2, "rounds (each measures every target once)")
	conc := flag.Int("c", 16, "concurrent clients")
	flag.Parse()
	if *meshpki == "" || *cfssl == "" {
		fmt.Fprintln(os.Stderr, "ocspbench: -meshpki and -cfssl are required")
		os.Exit(2)
	}
	if err := run(*meshpki, *cfssl, *duration, *rounds, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "ocspbench:", err)
		os.Exit(1)
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

func cli(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func run(meshpki, cfssl string, duration time.Duration, rounds, conc int) error {
	dir, err := os.MkdirTemp("", "ocspbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	https, err := freePort()
	if err != nil {
		return err
	}
	plain, err := freePort()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, meshpki, "server", "--data", data, "--listen", https, "--http-listen", plain, "--log-level", "warn")
	srv.Stdout, srv.Stderr = io.Discard, os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	if err := waitHTTP("http://" + plain + "/roots.pem"); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"provisioner", "add", "token", "bench", "--allow-dns", "*.bench.test", "--data", data},
	} {
		if _, err := cli(meshpki, args...); err != nil {
			return err
		}
	}
	tok, err := cli(meshpki, "token", "create", "svc", "--san", "svc.bench.test", "--provisioner", "bench", "--data", data)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(tok), "\n")
	out := filepath.Join(dir, "out")
	root := filepath.Join(data, "ca", "root.crt")
	if _, err := cli(meshpki, "cert", "issue", "svc", "--san", "svc.bench.test", "--token", lines[len(lines)-1],
		"--ca-url", "https://"+https, "--root", root, "--out", out); err != nil {
		return err
	}
	leaf, err := readCert(filepath.Join(out, "svc.crt"))
	if err != nil {
		return err
	}
	issuer, err := readCert(filepath.Join(data, "ca", "issuers", "default-1.crt"))
	if err != nil {
		return err
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return err
	}
	meshURL := "http://" + plain + "/ocsp"
	presigned, err := post(http.DefaultClient, meshURL, req)
	if err != nil {
		return err
	}
	if r, err := ocsp.ParseResponseForCert(presigned, leaf, issuer); err != nil || r.Status != ocsp.Good {
		return fmt.Errorf("meshpki's answer: %v", err)
	}
	responses := filepath.Join(dir, "responses")
	if err := os.WriteFile(responses, []byte(base64.StdEncoding.EncodeToString(presigned)+"\n"), 0o600); err != nil {
		return err
	}
	cfAddr, err := freePort()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(cfAddr)
	cf := exec.CommandContext(ctx, cfssl, "ocspserve", "-responses", responses, "-address", host, "-port", port, "-loglevel", "4")
	cf.Stdout, cf.Stderr = io.Discard, io.Discard
	if err := cf.Start(); err != nil {
		return err
	}
	defer func() { _ = cf.Process.Kill(); _ = cf.Wait() }()
	cfURL := "http://" + cfAddr + "/"
	if err := waitHTTP(cfURL); err != nil {
		return err
	}
	if got, err := post(http.DefaultClient, cfURL, req); err != nil || !bytes.Equal(got, presigned) {
		return fmt.Errorf("ocspserve does not serve the same response: %v", err)
	}

	targets := []struct{ name, url string }{{"meshpki /ocsp", meshURL}, {"cfssl ocspserve", cfURL}}
	results := map[string][]float64{}
	for r := 1; r <= rounds; r++ {
		for _, tg := range targets {
			rate, err := load(tg.url, req, presigned, duration, conc)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			results[tg.name] = append(results[tg.name], rate)
			fmt.Printf("round %d  %-16s %9.0f responses/s\n", r, tg.name, rate)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "\n| round | meshpki /ocsp | cfssl ocspserve | ratio |\n|---|---|---|---|\n")
	for i := range rounds {
		m, c := results[targets[0].name][i], results[targets[1].name][i]
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.2f× |\n", i+1, m, c, m/c)
	}
	return nil
}

func post(c *http.Client, url string, body []byte) ([]byte, error) {
	resp, err := c.Post(url, "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

// load posts req from conc clients with keep-alive for d and returns
// responses per second; every answer must equal want.
func load(url string, req, want []byte, d time.Duration, conc int) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				got, err := post(c, url, req)
				if err == nil && !bytes.Equal(got, want) {
					err = errors.New("an answer differs from the pre-signed response")
				}
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

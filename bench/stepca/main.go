// Command signbench drives meshpki's POST /v1/sign and step-ca v0.30.2's
// POST /1.0/sign with one-time tokens from one external load client, in one
// run on one machine, beside the raw crypto limit measured in the same run,
// so that the figures in docs/BENCHMARKS.md are comparable.
//
// It builds nothing itself: -meshpki and -step-ca name the two server
// binaries (run.sh builds them). For each server it makes a fresh CA in a
// temporary directory, starts the server on a loopback port, and then, in
// rounds that alternate between the servers:
//
//   - generates -n new ECDSA P-256 keys and CSRs (one per request, so no
//     server can reuse work across requests) and -n one-time tokens: for
//     meshpki through its token API with the bootstrap admin credential, for
//     step-ca signed by the harness with the JWK provisioner's key, as
//     `step ca token` would;
//   - sends the -n requests from -c workers over HTTP/1.1 keep-alive TLS
//     (one connection per worker), timing only this part, and checks that
//     every response is a 201 with a certificate.
//
// The raw crypto limit is CSR parse + signature check + x509.CreateCertificate
// with a P-256 key on every core, the work no CA can avoid.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	subject = "svc.bench.internal"
	workers = 16
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "signbench:", err)
		os.Exit(1)
	}
}

func run() error {
	meshBin := flag.String("meshpki", "", "meshpki binary")
	stepBin := flag.String("step-ca", "", "step-ca binary")
	beforeBin := flag.String("meshpki-before", "", "optional second meshpki binary (say, of the commit before a change), measured in the same rounds")
	n := flag.Int("n", 5000, "requests per round and server")
	rounds := flag.Int("rounds", 3, "rounds; each measures raw crypto, meshpki and step-ca")
	c := flag.Int("c", workers, "concurrent workers")
	flag.Parse()
	if *meshBin == "" || *stepBin == "" {
		return errors.New("usage: signbench -meshpki BIN -step-ca BIN [-n N] [-rounds R] [-c C]")
	}
	dir, err := os.MkdirTemp("", "signbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mesh, err := startMeshpki(ctx, *meshBin, filepath.Join(dir, "meshpki"))
	if err != nil {
		return fmt.Errorf("meshpki: %w (log: %s)", err, tail(filepath.Join(dir, "meshpki.log")))
	}
	defer mesh.stop()
	step, err := startStepCA(ctx, *stepBin, filepath.Join(dir, "step"))
	if err != nil {
		return fmt.Errorf("step-ca: %w (log: %s)", err, tail(filepath.Join(dir, "step.log")))
	}
	defer step.stop()
	var before *meshpki
	if *beforeBin != "" {
		if before, err = startMeshpki(ctx, *beforeBin, filepath.Join(dir, "meshpki-before")); err != nil {
			return fmt.Errorf("meshpki-before: %w (log: %s)", err, tail(filepath.Join(dir, "meshpki-before.log")))
		}
		defer before.stop()
	}

	fmt.Printf("machine: %d CPUs, %s; %d requests per round, c=%d, HTTP/1.1 keep-alive TLS, a new P-256 key per request\n",
		runtime.NumCPU(), runtime.Version(), *n, *c)
	// Warm both: TLS sessions, caches, first writes.
	targets := []target{mesh, step}
	if before != nil {
		targets = append(targets, before)
	}
	for _, s := range targets {
		if _, err := s.run(200, *c); err != nil {
			return err
		}
	}
	fmt.Printf("%-6s %12s %14s %14s %10s %10s", "round", "raw certs/s", "meshpki/s", "step-ca/s", "mesh/step", "mesh/raw")
	if before != nil {
		fmt.Printf(" %14s %12s", "before/s", "mesh/before")
	}
	fmt.Println()
	for r := 1; r <= *rounds; r++ {
		raw := rawCrypto(*n)
		m, err := mesh.run(*n, *c)
		if err != nil {
			return err
		}
		s, err := step.run(*n, *c)
		if err != nil {
			return err
		}
		fmt.Printf("%-6d %12.0f %9.0f (%3.0fms) %9.0f (%3.0fms) %9.2fx %9.0f%%", r, raw, m.rate, m.p99ms, s.rate, s.p99ms, m.rate/s.rate, 100*m.rate/raw)
		if before != nil {
			b, err := before.run(*n, *c)
			if err != nil {
				return err
			}
			fmt.Printf(" %9.0f (%3.0fms) %11.0f%%", b.rate, b.p99ms, 100*m.rate/b.rate)
		}
		fmt.Println()
	}
	return nil
}

// tail returns the end of a log file, for an error message.
func tail(file string) string {
	b, _ := os.ReadFile(file)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return string(b)
}

// check stops the program on an error that cannot happen in a sound
// environment (key generation, encoding).
func check(err error) {
	if err != nil {
		panic(err)
	}
}

// result is one timed run.
type result struct {
	rate  float64 // certificates per second
	p99ms float64
}

// target is a running CA.
type target interface {
	run(n, c int) (result, error)
	stop()
}

// server is a child process.
type server struct {
	cmd  *exec.Cmd
	done chan error
}

func (s *server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
}

func startProcess(ctx context.Context, logFile string, env []string, bin string, args ...string) (*server, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); log.Close() }()
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// httpClient talks HTTP/1.1 (as the CLIs of both CAs do by default for one
// request) with one keep-alive connection per worker.
func httpClient(roots *x509.CertPool, c int) *http.Client {
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     cfg,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
			MaxIdleConnsPerHost: c,
			MaxConnsPerHost:     c,
		},
	}
}

func waitReady(client *http.Client, url string, s *server) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			return fmt.Errorf("server exited: %v", err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after a minute", url)
}

func readRoots(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no certificate", file)
	}
	return pool, nil
}

// newCSRs makes n CSRs, each for a new P-256 key, for subject.
func newCSRs(n int) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	per := (n + runtime.NumCPU() - 1) / runtime.NumCPU()
	for start := 0; start < n; start += per {
		wg.Go(func() {
			for i := start; i < min(start+per, n); i++ {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				check(err)
				der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
					Subject: pkix.Name{CommonName: subject}, DNSNames: []string{subject},
				}, key)
				check(err)
				out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
			}
		})
	}
	wg.Wait()
	return out
}

// load posts bodies[i] to url from c workers and times it.
func load(client *http.Client, url string, bodies [][]byte, c int) (result, error) {
	var next atomic.Int64
	lat := make([]time.Duration, len(bodies))
	errs := make(chan error, c)
	start := time.Now()
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("BEGIN CERTIFICATE")) {
					errs <- fmt.Errorf("%s: %d %.300s", url, resp.StatusCode, body)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	return result{rate: float64(len(bodies)) / elapsed.Seconds(), p99ms: float64(lat[len(lat)*99/100]) / 1e6}, nil
}

// meshpki

type meshpki struct {
	*server
	url, bin, dir string
	env           []string
	client        *http.Client
}

func startMeshpki(ctx context.Context, bin, dir string) (*meshpki, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	env := []string{"MESHPKI_PASSWORD=signbench-passphrase"}
	srv, err := startProcess(ctx, dir+".log", env, bin, "server", "--data", dir, "--listen", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	m := &meshpki{server: srv, url: "https://127.0.0.1:" + strconv.Itoa(port), bin: bin, dir: dir, env: env}
	// The root exists once the server has initialised the CA.
	rootFile := filepath.Join(dir, "ca", "root.crt")
	for i := 0; i < 600; i++ {
		if _, err := os.Stat(filepath.Join(dir, "secrets", "admin.key")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	roots, err := readRoots(rootFile)
	if err != nil {
		return nil, err
	}
	m.client = httpClient(roots, workers)
	if err := waitReady(m.client, m.url+"/healthz", srv); err != nil {
		return nil, err
	}
	add := exec.Command(bin, "provisioner", "add", "token", "bench", "--allow-dns", "*.bench.internal", "--data", dir)
	add.Env = append(os.Environ(), env...)
	out, err := add.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("add provisioner: %v: %s", err, out)
	}
	return m, nil
}

func (m *meshpki) run(n, c int) (result, error) {
	csrs := newCSRs(n)
	// Tokens with the CLI, as an operator would make a batch (not timed).
	cmd := exec.Command(m.bin, "token", "create", subject, "--san", subject, "--provisioner", "bench",
		"--count", strconv.Itoa(n), "--ttl", "1h", "--data", m.dir)
	cmd.Env = append(os.Environ(), m.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("token create --count %d: %v: %s", n, err, stderr.Bytes())
	}
	tokens := strings.Fields(string(out))
	if len(tokens) != n {
		return result{}, fmt.Errorf("token create --count %d printed %d tokens", n, len(tokens))
	}
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i], _ = json.Marshal(map[string]string{"csr": csrs[i], "token": tokens[i]})
	}
	return load(m.client, m.url+"/v1/sign", bodies, c)
}

// step-ca

type stepCA struct {
	*server
	url    string
	client *http.Client
	key    *ecdsa.PrivateKey
	kid    string
}

// startStepCA writes what `step ca init` would — a root, an intermediate,
// ca.json with one JWK provisioner and a badger database (which is what
// makes its tokens one-time) — and starts step-ca on it.
func startStepCA(ctx context.Context, bin, dir string) (*stepCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	intKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signbench Root CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	intTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "signbench Intermediate CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	intDER, err := x509.CreateCertificate(rand.Reader, intTmpl, root, intKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	intKeyDER, err := x509.MarshalECPrivateKey(intKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"root_ca.crt":         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		"intermediate_ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: intDER}),
		"intermediate_ca_key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: intKeyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	provKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := jose.JSONWebKey{Key: provKey.Public(), Algorithm: "ES256", Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	cfg := map[string]any{
		"root":     filepath.Join(dir, "root_ca.crt"),
		"crt":      filepath.Join(dir, "intermediate_ca.crt"),
		"key":      filepath.Join(dir, "intermediate_ca_key"),
		"address":  "127.0.0.1:" + strconv.Itoa(port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]any{"format": "text"},
		"db":       map[string]any{"type": "badgerv2", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{"type": "JWK", "name": "bench", "key": jwk}},
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false},
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(cfgFile, cfgJSON, 0o600); err != nil {
		return nil, err
	}
	srv, err := startProcess(ctx, dir+".log", nil, bin, cfgFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	s := &stepCA{server: srv, url: "https://127.0.0.1:" + strconv.Itoa(port), client: httpClient(roots, workers), key: provKey, kid: jwk.KeyID}
	if err := waitReady(s.client, s.url+"/health", srv); err != nil {
		return nil, err
	}
	return s, nil
}

// token is what `step ca token svc.bench.internal` makes: a JWT signed by
// the provisioner's key, audience the sign endpoint, a random jti (the
// one-time id), five minutes of validity.
func (s *stepCA) token(signer jose.Signer) (string, error) {
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	now := time.Now()
	claims := struct {
		jwt.Claims
		SANs []string `json:"sans"`
	}{
		Claims: jwt.Claims{
			ID: hex.EncodeToString(id), Issuer: "bench", Subject: subject,
			Audience: jwt.Audience{s.url + "/1.0/sign"},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		},
		SANs: []string{subject},
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func (s *stepCA) run(n, c int) (result, error) {
	csrs := newCSRs(n)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return result{}, err
	}
	bodies := make([][]byte, n)
	for i := range n {
		tok, err := s.token(signer)
		if err != nil {
			return result{}, err
		}
		bodies[i], _ = json.Marshal(map[string]string{"csr": csrs[i], "ott": tok})
	}
	return load(s.client, s.url+"/1.0/sign", bodies, c)
}

// rawCrypto is the raw limit: for n CSRs, parse, check the signature and
// sign a leaf with x509.CreateCertificate, on every core.
func rawCrypto(n int) float64 {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raw"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	csrs := newCSRs(n)
	ders := make([][]byte, n)
	for i, c := range csrs {
		b, _ := pem.Decode([]byte(c))
		ders[i] = b.Bytes
	}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				csr, err := x509.ParseCertificateRequest(ders[i])
				if err != nil || csr.CheckSignature() != nil {
					check(errors.New("raw: bad CSR"))
				}
				serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
				check(err)
				tmpl := &x509.Certificate{SerialNumber: serial, DNSNames: csr.DNSNames, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey); err != nil {
					check(err)
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

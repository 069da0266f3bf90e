package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshpki/meshpki/internal/acme/acmetest"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

// TestFailoverUnderLoad runs three 'meshpki server' processes on one
// PostgreSQL database and one data directory. Clients reach them through a
// round-robin TCP balancer; the node agents through a balancer that sends
// each new connection to the first replica alive, the leader first. Under
// a bounded load of token issuances, ACME orders (lego) and agent syncs,
// the leader is killed with SIGKILL. Then:
//
//   - only requests in flight at the kill fail;
//   - another replica leads, and its singleton jobs run within 10 s of the
//     kill: a CRL lists a revocation made after it, a scheduled scan's new
//     finding is alerted and delivered, and the audit log is checkpointed;
//   - a spent token and an accepted ACME request (its nonce) are refused
//     when replayed to the survivors;
//   - every certificate a client was given is in the store;
//   - the audit chain verifies;
//   - every alert reached the receiver once;
//   - both agents, whose sync streams were on the killed replica, deliver
//     SVIDs of entries made after the kill.
func TestFailoverUnderLoad(t *testing.T) {
	pg := servertest.PostgresURL(t)
	bin := buildBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	ctx := context.Background()

	lb := startBalancer(t, false)
	agentLB := startBalancer(t, true)
	public := "https://" + lb.addr()
	h01 := acmetest.StartHTTP01(t)
	target := startScanTarget(t)
	hook := startAlertReceiver(t)

	// Three replicas: the first initialises DIR, the others share it.
	replicas := make([]*replica, 3)
	for i := range replicas {
		logFile := filepath.Join(work, fmt.Sprintf("replica-%d.log", i))
		f, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		srv := startServerLogging(t, bin, f, "--data", data, "--store", pg, "--url", public,
			"--scan-allow", "127.0.0.0/8", "--acme-http-port", strconv.Itoa(h01.Port))
		replicas[i] = &replica{srv: srv, addr: listenAddr(t, data), log: logFile}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range replicas {
				b, _ := os.ReadFile(r.log)
				t.Logf("replica %d log (last 3000 bytes):\n%s", i, tail(b, 3000))
			}
		}
	})
	var addrs []string
	for _, r := range replicas {
		addrs = append(addrs, r.addr)
	}
	lb.setBackends(addrs)
	rootPEM, err := os.ReadFile(filepath.Join(data, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	direct := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	leaderOf := func(alive []*replica) (int, int) {
		idx, n := -1, 0
		for i, r := range alive {
			if r.killed {
				continue
			}
			if v, err := r.leaderGauge(direct); err == nil && v == 1 {
				idx, n = i, n+1
			}
		}
		return idx, n
	}
	var leader int
	waitFor(t, 20*time.Second, "a leader among the replicas", func() bool {
		var n int
		leader, n = leaderOf(replicas)
		return n == 1
	})

	pass, err := os.ReadFile(filepath.Join(data, "secrets", "password"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := client.LoadCredentials(filepath.Join(data, server.AdminCertFile), filepath.Join(data, server.AdminKeyFile), []byte(strings.TrimSpace(string(pass))))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(client.Config{URL: public, RootsPEM: rootPEM, Certificate: cred, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := client.New(client.Config{URL: public, RootsPEM: rootPEM, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, bin, append(args, "--data", data, "--ca-url", public, "--root", filepath.Join(data, "ca", "root.crt"))...)
		if err != nil {
			t.Fatalf("meshpki %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	cli("provisioner", "add", "token", "web", "--allow-dns", "*.ft.test")
	cli("provisioner", "add", "acme", "acme", "--allow-ip", "127.0.0.1")

	// Two agents, each with an entry for uid 0 (this test), both
	// connected to the leader until it dies.
	agentLB.setBackends(append([]string{replicas[leader].addr}, without(addrs, leader)...))
	agents := make([]string, 2) // their sockets
	for i := range agents {
		node := fmt.Sprintf("spiffe://meshpki.internal/node/ft%d", i)
		tok := lastLine(cli("token", "create", "--join", "--spiffe-id", node))
		dir := filepath.Join(work, fmt.Sprintf("agent-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		agents[i] = filepath.Join(dir, "agent.sock")
		startAgent(t, bin, nil, "--server", "https://"+agentLB.addr(), "--trust-bundle", filepath.Join(data, "ca", "root.crt"),
			"--join-token-file", writeSecret(t, dir, "join-token", tok+"\n"), "--socket", agents[i], "--data", filepath.Join(dir, "data"))
		cli("entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://meshpki.internal/ft/w%d", i), "--parent", node, "--selector", "unix:uid:0")
	}
	for i, sock := range agents {
		waitForSVID(t, sock, fmt.Sprintf("spiffe://meshpki.internal/ft/w%d", i))
	}

	// An alert before the kill: the schedule scans the target, whose
	// certificate expires in two days.
	cli("alert", "channel", "add", "webhook", "hook", "--url", hook.srv.URL+"/hook")
	cli("alert", "rule", "add", "ft", "--channel", "hook", "--check", "expires_soon", "--within", "30d", "--label", "ft=yes")
	cli("scan", "schedule", "add", "ft", "--target", target.addr, "--every", "1h", "--label", "ft=yes")
	waitFor(t, 30*time.Second, "the alert on the first certificate", func() bool { return hook.count("c1.ft.test", "firing") == 1 })

	// The load: each worker runs its request until stopped (or a bound),
	// recording each.
	var (
		mu      sync.Mutex
		ops     []op
		stop    = make(chan struct{})
		workers sync.WaitGroup
	)
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); workers.Wait() }
	t.Cleanup(stopLoad) // a failed check must not leave the load running
	worker := func(kind string, bound int, pause time.Duration, do func(n int, o *op) error) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for n := range bound {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				o := op{kind: kind, start: time.Now()}
				o.err = do(n, &o)
				o.end = time.Now()
				mu.Lock()
				ops = append(ops, o)
				mu.Unlock()
			}
		}()
	}
	for w := range 2 {
		worker("sign", 3000, 0, func(n int, o *op) error {
			o.name = fmt.Sprintf("w%d-%d.ft.test", w, n)
			tok, err := admin.CreateToken(ctx, client.TokenRequest{Subject: o.name, SANs: []string{o.name}, Provisioner: "web"})
			if err != nil {
				return err
			}
			o.token = tok.Token
			res, err := anon.Sign(ctx, client.SignRequest{CSR: newCSR(t, o.name), Token: tok.Token})
			if err != nil {
				return err
			}
			o.serial = string(res.Serial)
			return nil
		})
	}
	acmeRec := &recordingTransport{base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	legoClient := newFailoverLego(t, public+"/acme/acme/directory", acmeRec, h01)
	worker("acme", 200, 0, func(_ int, o *op) (err error) {
		o.serial, err = legoOrder(ctx, legoClient)
		return err
	})
	// Agent syncs: entries for the agents' nodes while the load runs.
	worker("entry", 100, 200*time.Millisecond, func(n int, _ *op) error {
		_, err := runCLI(t, bin, "entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://meshpki.internal/ft/load-%d", n),
			"--parent", fmt.Sprintf("spiffe://meshpki.internal/node/ft%d", n%2), "--selector", "unix:uid:4242",
			"--data", data, "--ca-url", public, "--root", filepath.Join(data, "ca", "root.crt"))
		return err
	})

	time.Sleep(3 * time.Second)
	// A certificate to revoke after the kill, issued before it.
	var toRevoke string
	mu.Lock()
	for _, o := range ops {
		if o.kind == "sign" && o.err == nil {
			toRevoke = o.serial
		}
	}
	mu.Unlock()
	if toRevoke == "" {
		t.Fatal("no issuance succeeded before the kill")
	}
	spent := acmeRec.acceptedNewOrder()
	if spent == nil {
		t.Fatal("no ACME order was accepted before the kill")
	}

	// Kill the leader.
	old := replicas[leader]
	killAt := time.Now()
	if err := old.srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	old.killed = true
	_ = old.srv.cmd.Wait()
	t.Logf("killed replica %d (the leader) at %s", leader, killAt.Format("15:04:05.000"))

	// What the new leader has to do.
	target.use(target.second)
	go func() {
		_, _ = runCLI(t, bin, "scan", "schedule", "run", "ft", "--data", data, "--ca-url", public, "--root", filepath.Join(data, "ca", "root.crt"))
	}()
	// Sent at once, it may go out on a kept-alive connection to the dead
	// replica: a client tries again (and a 409 then says the first try
	// reached a replica).
	for attempt := 1; ; attempt++ {
		_, err := admin.Revoke(ctx, client.RevokeRequest{Serial: toRevoke})
		var apiErr *client.APIError
		if err == nil || errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
			break
		}
		if attempt == 3 {
			t.Fatalf("revoke after the kill: %v", err)
		}
		t.Logf("revoke after the kill, try %d: %v", attempt, err)
	}
	for i := range agents {
		cli("entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://meshpki.internal/ft/after%d", i),
			"--parent", fmt.Sprintf("spiffe://meshpki.internal/node/ft%d", i), "--selector", "unix:uid:0")
	}
	moved := map[string]time.Duration{}
	var auditCursor int64
	for _, ev := range mustAudit(t, admin, 0) {
		auditCursor = max(auditCursor, ev.Seq)
	}
	deadline := killAt.Add(10 * time.Second)
	for len(moved) < 4 && time.Now().Before(deadline) {
		if _, ok := moved["leader"]; !ok {
			if i, n := leaderOf(replicas); n == 1 && i != leader {
				moved["leader"] = time.Since(killAt)
			}
		}
		if _, ok := moved["crl"]; !ok && crlLists(direct, public, toRevoke) {
			moved["crl"] = time.Since(killAt)
		}
		if _, ok := moved["alert"]; !ok && hook.count("c2.ft.test", "firing") > 0 {
			moved["alert"] = time.Since(killAt)
		}
		if _, ok := moved["checkpoint"]; !ok {
			for _, ev := range mustAudit(t, admin, auditCursor) {
				auditCursor = max(auditCursor, ev.Seq)
				if ev.Type == "audit.checkpoint" && ev.Time.After(killAt) {
					moved["checkpoint"] = time.Since(killAt)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, job := range []string{"leader", "crl", "alert", "checkpoint"} {
		d, ok := moved[job]
		if !ok {
			t.Errorf("%s: did not move within 10s of the kill", job)
			continue
		}
		t.Logf("%-10s moved %s after the kill", job, d.Round(10*time.Millisecond))
	}

	// Let the load run past the failover, then stop it.
	time.Sleep(time.Until(killAt.Add(6 * time.Second)))
	stopLoad()

	// Only requests in flight at the kill failed.
	counts := map[string][2]int{}
	for _, o := range ops {
		c := counts[o.kind]
		if o.err != nil {
			c[1]++
			if o.start.After(killAt.Add(500 * time.Millisecond)) {
				t.Errorf("%s started %s after the kill failed: %v", o.kind, o.start.Sub(killAt).Round(time.Millisecond), o.err)
			} else if o.end.Before(killAt) {
				t.Errorf("%s failed before the kill: %v", o.kind, o.err)
			} else {
				t.Logf("in flight at the kill (started %s from it), failed: %s: %v", o.start.Sub(killAt).Round(time.Millisecond), o.kind, o.err)
			}
		} else {
			c[0]++
		}
		counts[o.kind] = c
	}
	for _, kind := range []string{"sign", "acme", "entry"} {
		t.Logf("%-5s %d succeeded, %d failed", kind, counts[kind][0], counts[kind][1])
		if counts[kind][0] == 0 {
			t.Errorf("no %s succeeded", kind)
		}
	}

	// No certificate lost.
	var afterKill int
	for _, o := range ops {
		if o.err != nil || o.serial == "" {
			continue
		}
		if o.start.After(killAt) {
			afterKill++
		}
		if _, err := admin.GetCertificate(ctx, store.Serial(o.serial)); err != nil {
			t.Errorf("certificate %s (%s) given to a client is not in the store: %v", o.serial, o.kind, err)
		}
	}
	if afterKill == 0 {
		t.Error("no certificate was issued after the kill")
	}

	// Replays are refused by the survivors.
	for _, o := range ops {
		if o.kind != "sign" || o.err != nil {
			continue
		}
		for range 2 { // two connections: two replicas
			_, err := anon.Sign(ctx, client.SignRequest{CSR: newCSR(t, o.name), Token: o.token})
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Message, "already used") {
				t.Fatalf("a spent token replayed after the kill: %v", err)
			}
			anon.Close()
		}
		break
	}
	for range 2 {
		status, body := acmeRec.replay(spent)
		if status != http.StatusBadRequest || !strings.Contains(body, "badNonce") {
			t.Fatalf("an accepted ACME request replayed after the kill: %d %s", status, body)
		}
	}

	// Agents: the entries made after the kill reach both.
	for i, sock := range agents {
		waitForSVID(t, sock, fmt.Sprintf("spiffe://meshpki.internal/ft/after%d", i))
	}

	// Every alert once.
	if n := hook.count("c1.ft.test", "firing"); n != 1 {
		t.Errorf("the first certificate's alert was delivered %d times", n)
	}
	if n := hook.count("c2.ft.test", "firing"); n != 1 {
		t.Errorf("the second certificate's alert was delivered %d times", n)
	}
	if dup := hook.repeatedKey(); dup != "" {
		t.Errorf("notification %s was delivered twice", dup)
	}

	if out, err := runCLI(t, bin, "audit", "verify", "--store", pg); err != nil || !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}

// op is one request of the load.
type op struct {
	kind, name string
	start, end time.Time
	err        error
	serial     string
	token      string
}

type replica struct {
	srv    *runningServer
	addr   string
	log    string
	killed bool
}

// leaderGauge reads meshpki_leader from the replica's own address.
func (r *replica) leaderGauge(c *http.Client) (float64, error) {
	resp, err := c.Get("https://" + r.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "meshpki_leader "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no meshpki_leader")
}

func without(list []string, i int) []string {
	return append(slices.Clone(list[:i]), list[i+1:]...)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForSVID waits until the agent's Workload API serves an SVID for id.
func waitForSVID(t *testing.T, sock, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+sock))
		cancel()
		last = last[:0]
		for _, s := range svids {
			last = append(last, s.ID.String())
		}
		if err == nil && slices.Contains(last, id) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("agent %s never served %s; it serves %v", sock, id, last)
}

func newCSR(t *testing.T, name string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Error(err)
		return ""
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		t.Error(err)
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustAudit(t *testing.T, admin *client.Client, after int64) []client.AuditEvent {
	t.Helper()
	var out []client.AuditEvent
	for {
		evs, err := admin.ListAudit(context.Background(), after, 1000)
		if err != nil {
			t.Logf("audit list: %v", err)
			return out
		}
		out = append(out, evs...)
		if len(evs) < 1000 {
			return out
		}
		after = evs[len(evs)-1].Seq
	}
}

// crlLists reports whether the CRL the current generation publishes lists
// the serial (hex).
func crlLists(c *http.Client, public, serial string) bool {
	resp, err := c.Get(public + "/crl/default")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return false
	}
	want, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(want) == 0 {
			return true
		}
	}
	return false
}

// balancer is a TCP load balancer: each new connection goes to the next
// backend in turn (or, firstAlive, to the first in the list that accepts),
// skipping those that refuse.
type balancer struct {
	ln         net.Listener
	firstAlive bool
	mu         sync.Mutex
	backends   []string
	next       int
}

func startBalancer(t *testing.T, firstAlive bool) *balancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, firstAlive: firstAlive}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) setBackends(addrs []string) {
	b.mu.Lock()
	b.backends = slices.Clone(addrs)
	b.mu.Unlock()
}

func (b *balancer) serve(c net.Conn) {
	defer c.Close()
	b.mu.Lock()
	order := slices.Clone(b.backends)
	if !b.firstAlive && len(order) > 0 {
		start := b.next % len(order)
		b.next++
		order = append(order[start:], order[:start]...)
	}
	b.mu.Unlock()
	var up net.Conn
	for _, a := range order {
		var err error
		if up, err = net.DialTimeout("tcp", a, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ends: close both
}

// scanTarget is a TLS endpoint whose certificate the test swaps.
type scanTarget struct {
	addr          string
	first, second *tls.Certificate
	cur           atomic.Pointer[tls.Certificate]
}

func startScanTarget(t *testing.T) *scanTarget {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, serial int64) *tls.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			// Long-lived, so that expires_soon's thresholds apply to it.
			NotBefore: time.Now().Add(-80 * 24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	s := &scanTarget{first: mk("c1.ft.test", 1), second: mk("c2.ft.test", 2)}
	s.cur.Store(s.first)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cur.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	s.addr = ln.Addr().String()
	return s
}

func (s *scanTarget) use(c *tls.Certificate) { s.cur.Store(c) }

// alertReceiver is an Alertmanager-webhook receiver that counts what it
// gets.
type alertReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]int
	got  map[string]int // name/status → deliveries
}

func startAlertReceiver(t *testing.T) *alertReceiver {
	r := &alertReceiver{keys: map[string]int{}, got: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.keys[req.Header.Get("Idempotency-Key")]++
		for _, a := range body.Alerts {
			r.got[a.Labels["name"]+"/"+a.Status]++
		}
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *alertReceiver) count(name, status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[name+"/"+status]
}

func (r *alertReceiver) repeatedKey() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.keys {
		if n > 1 {
			return k
		}
	}
	return ""
}

// recordingTransport keeps the first new-order request the server
// accepted, to replay it.
type recordingTransport struct {
	base *http.Transport
	mu   sync.Mutex
	kept *keptRequest
}

type keptRequest struct {
	url  string
	body []byte
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && strings.HasSuffix(req.URL.Path, "/new-order") {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(strings.NewReader(string(b)))
	}
	resp, err := rt.base.RoundTrip(req)
	if err == nil && body != nil && resp.StatusCode == http.StatusCreated {
		rt.mu.Lock()
		if rt.kept == nil {
			rt.kept = &keptRequest{url: req.URL.String(), body: body}
		}
		rt.mu.Unlock()
	}
	return resp, err
}

func (rt *recordingTransport) acceptedNewOrder() *keptRequest {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.kept
}

// replay sends k again on a new connection.
func (rt *recordingTransport) replay(k *keptRequest) (int, string) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: rt.base.TLSClientConfig.Clone()}}
	resp, err := c.Post(k.url, "application/jose+json", strings.NewReader(string(k.body)))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type legoUser struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *legoUser) GetEmail() string                           { return "" }
func (u *legoUser) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *legoUser) GetPrivateKey() crypto.Signer               { return u.key }

func newFailoverLego(t *testing.T, directory string, rt http.RoundTripper, h01 *acmetest.HTTP01) *lego.Client {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// lego logs every order to stdout; its failures reach the test anyway.
	quiet, was := slog.New(slog.NewTextHandler(io.Discard, nil)), legolog.Default()
	legolog.SetDefault(quiet)
	t.Cleanup(func() { legolog.SetDefault(was) })
	u := &legoUser{key: key}
	cfg := lego.NewConfig(u)
	cfg.CADirURL = directory
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: rt}
	c, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Challenge.SetHTTP01Provider(h01); err != nil {
		t.Fatal(err)
	}
	if u.reg, err = c.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
		t.Fatal(err)
	}
	return c
}

// legoOrder orders a certificate for 127.0.0.1 and returns its serial.
func legoOrder(ctx context.Context, c *lego.Client) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, key)
	if err != nil {
		return "", err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return "", err
	}
	res, err := c.Certificate.ObtainForCSR(ctx, certificate.ObtainForCSRRequest{CSR: csr})
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(res.Certificate)
	if block == nil {
		return "", errors.New("no certificate in the answer")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return string(store.SerialOf(leaf.SerialNumber)), nil
}

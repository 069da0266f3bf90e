package agent_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/agent"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store"
)

const td = "test.internal"

// helperEnv, when set, makes the test binary act as a workload process (see
// TestMain) instead of running tests.
const helperEnv = "MESHPKI_AGENT_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(workloadHelper(mode))
	}
	os.Exit(m.Run())
}

// workloadHelper is a workload process: "fetch" prints its SPIFFE ID;
// "serve" accepts one spiffetls connection from ALLOW and echoes a line;
// "dial" connects to ADDR as a spiffetls client expecting ALLOW.
func workloadHelper(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr := workloadapi.WithAddr("unix://" + os.Getenv("SOCK"))
	switch mode {
	case "fetch":
		svid, err := workloadapi.FetchX509SVID(ctx, addr)
		if err != nil {
			fmt.Println("error:", err)
			return 0
		}
		fmt.Println(svid.ID.String())
		return 0
	case "serve", "dial":
		src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(addr))
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		defer src.Close()
		allow := tlsconfig.AuthorizeID(spiffeid.RequireFromString(os.Getenv("ALLOW")))
		if mode == "serve" {
			ln, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0", spiffetls.MTLSServerWithSource(allow, src))
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			fmt.Println(ln.Addr().String())
			conn, err := ln.Accept()
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			defer conn.Close()
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			fmt.Fprintf(conn, "echo %s", line)
			return 0
		}
		conn, err := spiffetls.DialWithMode(ctx, "tcp", os.Getenv("ADDR"), spiffetls.MTLSClientWithSource(allow, src))
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		defer conn.Close()
		fmt.Fprintln(conn, "hello")
		reply, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Print(reply)
		return 0
	}
	return 2
}

type fixture struct {
	in     *servertest.Instance
	listen string
	root   string
	dir    string
	sock   string
	cancel context.CancelFunc
	done   chan error
	agent  *agent.Agent
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, servertest.Options{})
}

// newFixtureWith starts the server with o (its Listen is chosen here).
func newFixtureWith(t testing.TB, o servertest.Options) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	f := &fixture{listen: listen}
	o.Listen = listen
	f.in = servertest.Start(t, o)
	f.root = filepath.Join(f.in.DataDir, "ca", "root.crt")
	// A directory other uids can reach, for workloads run as other users.
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.dir = filepath.Join(base, "agent")
	sockDir := filepath.Join(base, "run")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.sock = filepath.Join(sockDir, "agent.sock")
	return f
}

func (f *fixture) joinToken(t testing.TB, node string) string {
	t.Helper()
	g, err := f.in.Server.Registration().CreateJoinToken(context.Background(), node, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	return g.Token
}

func (f *fixture) startAgent(t testing.TB, token string) {
	t.Helper()
	pw := filepath.Join(filepath.Dir(f.dir), "agent-pass")
	if err := os.WriteFile(pw, []byte("agent-test-passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	a, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, JoinToken: token, Socket: f.sock, DataDir: f.dir, PasswordFile: pw,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), Ready: func() { close(ready) }})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done, f.agent = cancel, make(chan error, 1), a
	go func() { f.done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-f.done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready in 20s")
	}
	t.Cleanup(f.stopAgent)
}

func (f *fixture) stopAgent() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

func (f *fixture) entry(t testing.TB, id, parent string, selectors ...string) store.Entry {
	t.Helper()
	e, err := f.in.Server.Registration().CreateEntry(context.Background(), store.Entry{SPIFFEID: id, Parent: parent, Selectors: selectors}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) fetch(t testing.TB) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+f.sock))
	if err != nil {
		return "", err
	}
	return svid.ID.String(), nil
}

// waitFetch retries until the workload gets an SVID (the agent mints
// asynchronously after a sync message).
func (f *fixture) waitFetch(t testing.TB, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := f.fetch(t)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workload got %q (%v), want %s", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func uidSelector() string { return "unix:uid:" + strconv.Itoa(os.Getuid()) }

func TestAgentServesSVIDsAndFollowsChanges(t *testing.T) {
	f := newFixture(t)
	node := "spiffe://" + td + "/node/n1"
	web := f.entry(t, "spiffe://"+td+"/app/web", node, uidSelector())
	f.entry(t, "spiffe://"+td+"/app/elsewhere", "spiffe://"+td+"/node/other", uidSelector())
	token := f.joinToken(t, node)
	f.startAgent(t, token)
	f.waitFetch(t, "spiffe://"+td+"/app/web")

	// JWT-SVID and its validation through the agent.
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+f.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	jwt, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if jwt.ID.String() != "spiffe://"+td+"/app/web" {
		t.Fatalf("JWT-SVID for %s", jwt.ID)
	}
	if _, err := client.ValidateJWTSVID(ctx, jwt.Marshal(), "db"); err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if _, err := client.ValidateJWTSVID(ctx, jwt.Marshal(), "other"); err == nil {
		t.Fatal("a JWT-SVID validated for the wrong audience")
	}
	bundles, err := client.FetchX509Bundles(ctx)
	if err != nil || bundles.Len() != 1 {
		t.Fatalf("FetchX509Bundles: %v", err)
	}

	// A new entry reaches a watching workload quickly.
	updates := make(chan *workloadapi.X509Context, 8)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { _ = client.WatchX509Context(wctx, watcher{updates}) }()
	<-updates
	start := time.Now()
	var before string
	f.entry(t, "spiffe://"+td+"/app/api", node, uidSelector())
	for {
		select {
		case u := <-updates:
			if len(u.SVIDs) == 2 {
				for _, sv := range u.SVIDs {
					if sv.ID.String() == web.SPIFFEID {
						before = sv.Certificates[0].SerialNumber.String()
					}
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("new entry took %s to reach the workload", d)
				}
				goto done
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the new entry's SVID never reached the watching workload")
		}
	}
done:
	// A changed entry rotates its SVID: the watcher gets a new certificate.
	web.X509TTL = 2 * time.Hour
	if _, err := f.in.Server.Registration().UpdateEntry(ctx, web, "test"); err != nil {
		t.Fatal(err)
	}
	rotatedSVID := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			for _, sv := range u.SVIDs {
				if sv.ID.String() == web.SPIFFEID && sv.Certificates[0].SerialNumber.String() != before {
					if life := sv.Certificates[0].NotAfter.Sub(sv.Certificates[0].NotBefore); life < 2*time.Hour {
						t.Fatalf("rotated SVID lives %s, want the entry's new 2h", life)
					}
					goto rotated
				}
			}
		case <-rotatedSVID:
			t.Fatal("the changed entry's SVID was never rotated at the workload")
		}
	}
rotated:
	// An intermediate rotated on the server reaches the workload's bundle.
	if _, err := f.in.Server.Authority().Hierarchy().RotateIntermediate(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	rotated := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			b, ok := u.Bundles.Get(spiffeid.RequireTrustDomainFromString(td))
			if ok && len(b.X509Authorities()) == 3 {
				goto bundled
			}
		case <-rotated:
			t.Fatal("the rotated intermediate never reached the workload's bundle")
		}
	}
bundled:
	st := f.agent.Status()
	if !st.Connected || st.SVIDs != 2 || st.OutageBudget < 50*time.Minute {
		t.Fatalf("status: %+v", st)
	}
	saved, err := agent.ReadStatus(f.dir)
	if err != nil || saved.NodeID != node {
		t.Fatalf("status file: %+v %v", saved, err)
	}

	// A replayed join token is refused.
	a2, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, JoinToken: token,
		Socket: filepath.Join(t.TempDir(), "a2.sock"), DataDir: filepath.Join(t.TempDir(), "a2"),
		PasswordFile: filepath.Join(filepath.Dir(f.dir), "agent-pass"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if err := a2.Run(ctx2); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replayed join token: %v", err)
	}
}

type watcher struct{ ch chan *workloadapi.X509Context }

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.ch <- c }
func (w watcher) OnX509ContextWatchError(error)                  {}

func TestAgentSurvivesServerOutageAndEviction(t *testing.T) {
	f := newFixture(t)
	node := "spiffe://" + td + "/node/n2"
	f.entry(t, "spiffe://"+td+"/app/web", node, uidSelector())
	f.startAgent(t, f.joinToken(t, node))
	f.waitFetch(t, "spiffe://"+td+"/app/web")

	// Server down: the agent keeps serving.
	dataDir := f.in.DataDir
	f.in.Stop()
	for deadline := time.Now().Add(30 * time.Second); f.agent.Status().Connected; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("status says connected with the server down")
		}
	}
	if got, err := f.fetch(t); err != nil || got != "spiffe://"+td+"/app/web" {
		t.Fatalf("with the server down: %q %v", got, err)
	}
	// Restarted while the server is down: no new attestation, and the SVIDs
	// saved (sealed) in the data directory are served at once.
	f.stopAgent()
	f.startAgent(t, "")
	if got, err := f.fetch(t); err != nil || got != "spiffe://"+td+"/app/web" {
		t.Fatalf("after a restart with the server down: %q %v", got, err)
	}
	for _, name := range []string{agent.CacheFile, agent.CacheKeyFile, agent.NodeKeyFile} {
		if st, err := os.Stat(filepath.Join(f.dir, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, st.Mode(), err)
		}
	}
	// Server back on the same address: the agent resyncs without restart.
	f.in = servertest.Start(t, servertest.Options{DataDir: dataDir, Listen: f.listen})
	f.entry(t, "spiffe://"+td+"/app/late", node, uidSelector())
	deadline := time.Now().Add(20 * time.Second)
	for f.agent.Status().SVIDs != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not resync after the server came back: %+v", f.agent.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Evicted through the admin API: the open sync stream ends at once, a
	// new one is refused, and nothing new is minted.
	admin, err := client.New(client.Config{URL: f.in.URL, RootsPEM: f.in.RootPEM, Certificate: &f.in.AdminCert})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.EvictNode(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for f.agent.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatal("the evicted node's sync stream is still open")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.entry(t, "spiffe://"+td+"/app/after-evict", node, uidSelector())
	// Wait until the agent has tried to sync again since the entry exists,
	// and been refused (the node API audits it), rather than for a while.
	ctx := context.Background()
	since, _, err := f.in.Server.Store().AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for refused := false; !refused; {
		events, err := f.in.Server.Store().ListAudit(ctx, since, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			refused = refused || ev.Type == audit.TypeRequestDenied && ev.Actor == "node:"+node && strings.Contains(ev.Detail["reason"], "is evicted")
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("the evicted agent did not try to sync again within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polls for the refusal
	}
	if st := f.agent.Status(); st.SVIDs != 2 || st.Connected {
		t.Fatalf("an evicted node got new SVIDs or a sync stream: %+v", st)
	}
	// It still serves what it holds until those expire.
	if got, err := f.fetch(t); err != nil || got == "" {
		t.Fatalf("after eviction the agent stopped serving held SVIDs: %v", err)
	}
}

func TestWorkloadsByUIDAndMTLS(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root so that workloads can run as other uids")
		}
		t.Skip("needs root to run workloads as other uids")
	}
	f := newFixture(t)
	node := "spiffe://" + td + "/node/n3"
	a, b := "spiffe://"+td+"/app/a", "spiffe://"+td+"/app/b"
	f.entry(t, a, node, "unix:uid:1501")
	f.entry(t, b, node, "unix:uid:1502")
	f.startAgent(t, f.joinToken(t, node))
	// The test binary lives in a 0700 build directory: run a copy.
	exe := filepath.Join(filepath.Dir(f.sock), "agent.test")
	copyExecutable(t, os.Args[0], exe)
	run := func(uid int, mode string, env ...string) *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}, append(env, helperEnv+"="+mode, "SOCK="+f.sock)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		return cmd
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		outA, errA := run(1501, "fetch").Output()
		outB, errB := run(1502, "fetch").Output()
		outC, _ := run(1503, "fetch").Output()
		if errA == nil && errB == nil && strings.TrimSpace(string(outA)) == a && strings.TrimSpace(string(outB)) == b {
			if !strings.Contains(string(outC), "PermissionDenied") {
				t.Fatalf("uid 1503 with no entry got %q", outC)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uid 1501 got %q (%v), uid 1502 got %q (%v)", outA, errA, outB, errB)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The two workloads talk mTLS, each authorizing the other's ID.
	srv := run(1501, "serve", "ALLOW="+b)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.HasPrefix(addr, "error") {
		t.Fatalf("server workload: %q %v", addr, err)
	}
	out, err := run(1502, "dial", "ALLOW="+a, "ADDR="+strings.TrimSpace(addr)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "echo hello" {
		t.Fatalf("mTLS between the workloads: %q %v", out, err)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestAgentBinarySelectors: an entry pinned to another binary's SHA-256
// gives this process nothing; pinned to its own binary (and path), it works.
func TestAgentBinarySelectors(t *testing.T) {
	f := newFixture(t)
	node := "spiffe://" + td + "/node/n4"
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	f.entry(t, "spiffe://"+td+"/app/other-binary", node, uidSelector(), "unix:sha256:"+strings.Repeat("ab", 32))
	f.startAgent(t, f.joinToken(t, node))
	// Wait until the agent holds the entry's SVID: what it serves is then
	// decided by workload attestation alone.
	for deadline := time.Now().Add(30 * time.Second); f.agent.Status().SVIDs < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent minted nothing: %+v", f.agent.Status())
		}
	}
	if _, err := f.fetch(t); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a binary whose sha256 does not match got: %v", err)
	}
	f.entry(t, "spiffe://"+td+"/app/this-binary", node, uidSelector(), "unix:sha256:"+hex.EncodeToString(sum[:]), "unix:path:"+exe)
	f.waitFetch(t, "spiffe://"+td+"/app/this-binary")
}

package proxy

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/workload"
)

// agentSource is what a Workload API serves from, rotated by the test.
type agentSource struct {
	mu      sync.Mutex
	svids   []workload.SVID
	bundles []workload.Bundle
	changed chan struct{}
}

func (s *agentSource) SVIDs() ([]workload.SVID, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svids, s.changed
}

func (s *agentSource) Bundles() ([]workload.Bundle, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundles, s.changed
}

func (s *agentSource) MintJWTSVID(context.Context, string, []string) (string, time.Time, error) {
	return "", time.Time{}, fmt.Errorf("not in this test")
}

func (s *agentSource) set(chain []*x509.Certificate, key crypto.Signer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svids = []workload.SVID{{EntryID: "e1", SPIFFEID: "spiffe://example.test/ns/web", Chain: chain, Key: key,
		Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}}}
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The identity follows the real Workload API (meshpki's server, go-spiffe's
// client): the first SVID, then each rotation.
func TestWatchWorkloadAPI(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	src := &agentSource{bundles: []workload.Bundle{{TrustDomain: "example.test", X509Authorities: []*x509.Certificate{td.root}}}}
	chain, key := td.svid(t, "/ns/web", "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	src.set(chain, key)
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	srv, err := workload.New(workload.Config{Socket: sock, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ctx) }()
	h := NewHolder()
	go func() {
		defer wg.Done()
		if err := WatchWorkloadAPI(ctx, "unix://"+sock, h, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	select {
	case <-h.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no identity from the Workload API")
	}
	if got := h.Load(); got.ID.String() != "spiffe://example.test/ns/web" || got.Certificate.Leaf.SerialNumber.Cmp(chain[0].SerialNumber) != 0 {
		t.Fatalf("identity %v", got.ID)
	}
	rotated, key2 := td.svid(t, "/ns/web", "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	src.set(rotated, key2)
	waitFor(t, "the rotated SVID", func() bool { return h.Load().Certificate.Leaf.SerialNumber.Cmp(rotated[0].SerialNumber) == 0 })
	if h.Rotations() != 1 {
		t.Fatalf("%d rotations, want 1", h.Rotations())
	}
}

func TestWatchWorkloadAPIWithoutAddress(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	os.Unsetenv("SPIFFE_ENDPOINT_SOCKET")
	if err := WatchWorkloadAPI(context.Background(), "", NewHolder(), nil); err == nil || !strings.Contains(err.Error(), "--workload-api") {
		t.Fatalf("%v", err)
	}
}

// Files are reloaded when they change; a change that does not load keeps
// the identity held.
func TestWatchFiles(t *testing.T) {
	td := newTrustDomain(t, "example.test")
	dir := t.TempDir()
	f := Files{Cert: filepath.Join(dir, "svid.pem"), Key: filepath.Join(dir, "svid.key"), Bundle: filepath.Join(dir, "bundle.pem")}
	write := func(chain []*x509.Certificate, key crypto.Signer) {
		writePEM(t, f.Cert, "CERTIFICATE", chain[0].Raw)
		k, err := keys.MarshalPrivateKeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.Key, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePEM(t, f.Bundle, "CERTIFICATE", td.root.Raw)
	first, key := td.svid(t, "/ns/web", "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	write(first, key)
	h := NewHolder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	lb := &logBuffer{}
	go func() { done <- WatchFiles(ctx, f, 20*time.Millisecond, h, slog.New(slog.NewTextHandler(lb, nil))) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the first identity", func() bool { return h.Load() != nil })
	if h.Load().ID.String() != "spiffe://example.test/ns/web" {
		t.Fatalf("identity %v", h.Load().ID)
	}
	time.Sleep(20 * time.Millisecond) // a new modification time
	second, key2 := td.svid(t, "/ns/web", "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	write(second, key2)
	waitFor(t, "the reload", func() bool { return h.Load().Certificate.Leaf.SerialNumber.Cmp(second[0].SerialNumber) == 0 })
	if err := os.WriteFile(f.Key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a warning", func() bool { return strings.Contains(lb.String(), "not reloaded; keeping the identity held") })
	if h.Load().Certificate.Leaf.SerialNumber.Cmp(second[0].SerialNumber) != 0 {
		t.Fatal("a broken key replaced the identity")
	}

	if err := WatchFiles(context.Background(), Files{Cert: "/nonexistent", Key: f.Key, Bundle: f.Bundle}, time.Second, NewHolder(), nil); err == nil {
		t.Fatal("missing files accepted")
	}
}

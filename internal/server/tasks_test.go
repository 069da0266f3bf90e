package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
)

// TestAFailingPartStopsTheServer: when one long-running part fails — here
// the HTTPS server, whose listener is closed under it — Serve stops every
// other part and returns that part's error, instead of running on half
// alive; the data directory is left unlocked and without server.json.
func TestAFailingPartStopsTheServer(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("a test passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	opts := Options{DataDir: dir, Listen: "127.0.0.1:0", PasswordFile: pass, Init: ca.InitOptions{Name: "Test", TrustDomain: "test.internal"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	first := opts
	first.Ready = func(net.Addr) { close(ready) }
	s, err := Start(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("Serve returned before it was ready: %v", err)
	}
	s.listener.Close()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "HTTPS server") {
			t.Fatalf("Serve = %v, want the HTTPS server's failure", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the server ran on for a minute after its HTTPS server failed")
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !os.IsNotExist(err) {
		t.Errorf("server.json is still there: %v", err)
	}
	// The lock is released: another server starts on the directory.
	s2, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("a new server after the failure: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s2.Serve(ctx); err != nil {
		t.Fatalf("the new server: %v", err)
	}
}

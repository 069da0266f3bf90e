package agent_test

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

	"github.com/meshpki/meshpki/internal/agent"
)

// TestRunStartsNothingWhenAComponentCannotStart: with its metrics address
// taken, the agent returns the error at once and leaves no Workload API
// behind — no socket, no goroutines still serving it.
func TestRunStartsNothingWhenAComponentCannotStart(t *testing.T) {
	f := newFixture(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pw := filepath.Join(filepath.Dir(f.dir), "agent-pass")
	if err := os.WriteFile(pw, []byte("agent-test-passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, JoinToken: f.joinToken(t, "spiffe://"+td+"/node/m"), Socket: f.sock,
		DataDir: f.dir, PasswordFile: pw, MetricsListen: taken.Addr().String(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return although its metrics listener could not start")
	}
	if err == nil || !strings.Contains(err.Error(), "metrics listener") {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(f.sock); !os.IsNotExist(err) {
		t.Fatalf("the Workload API socket is still there: %v", err)
	}
}

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

// TestAgentJudgesTimeByItsClock: with the clock injected, what the agent
// holds expires without waiting — a node SVID on disk that the clock says has
// lapsed needs attesting again, and the outage budget counts down.
func TestAgentJudgesTimeByItsClock(t *testing.T) {
	f := newFixture(t)
	node := "spiffe://" + td + "/node/clock"
	f.entry(t, "spiffe://"+td+"/app/clock", node, uidSelector())
	f.startAgent(t, f.joinToken(t, node))
	f.waitFetch(t, "spiffe://"+td+"/app/clock")
	budget := f.agent.Status().OutageBudget
	f.stopAgent()

	pw := filepath.Join(filepath.Dir(f.dir), "agent-pass")
	at := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	cfg := agent.Config{ServerURL: f.in.URL, TrustBundle: f.root, Socket: f.sock, DataDir: f.dir, PasswordFile: pw,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// Half an hour on: the node SVID (24h) is still good, and the budget
	// of the sealed SVIDs (1h) is down by about half an hour.
	cfg.Clock = at(30 * time.Minute)
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("New half an hour on: %v", err)
	}
	if got := a.Status().OutageBudget; got > budget-29*time.Minute || got < budget-31*time.Minute {
		t.Errorf("outage budget %s half an hour on, was %s", got, budget)
	}
	// A day on: the node SVID has lapsed, and without a join token the
	// agent cannot start.
	cfg.Clock = at(25 * time.Hour)
	if _, err := agent.New(cfg); err == nil || !strings.Contains(err.Error(), "no valid node SVID") {
		t.Fatalf("New a day on without a token: %v", err)
	}
}

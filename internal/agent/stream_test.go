package agent_test

import (
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/servertest"
)

// TestSyncStreamOutlivesServerTimeouts runs the server with every HTTP
// timeout at 300ms and keeps one agent connected for ten times that: the
// sync stream must stay the one the agent opened (no reset, no resync from
// a snapshot), and still carry an entry change made at the end.
func TestSyncStreamOutlivesServerTimeouts(t *testing.T) {
	short := 300 * time.Millisecond
	f := newFixtureWith(t, servertest.Options{Timeouts: server.Timeouts{ReadHeader: short, Read: short, Write: short, Idle: short, Ping: short}})
	node := "spiffe://" + td + "/node/stream"
	f.startAgent(t, f.joinToken(t, node))
	f.entry(t, "spiffe://"+td+"/app/first", node, uidSelector())
	f.waitFetch(t, "spiffe://"+td+"/app/first")

	time.Sleep(10 * short) // the point of the test: outlive every server timeout
	st := f.agent.Status()
	if !st.Connected || st.SyncStreams != 1 {
		t.Fatalf("after %s: connected=%v, sync streams opened=%d; want one stream that never ended", 10*short, st.Connected, st.SyncStreams)
	}
	second := "spiffe://" + td + "/app/second"
	e := f.entry(t, second, node, uidSelector())
	deadline := time.Now().Add(10 * time.Second)
	for f.agent.Status().SVIDs < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("entry %s never reached the agent over the old stream", e.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.agent.Status().SyncStreams; n != 1 {
		t.Fatalf("sync streams opened: %d, want 1", n)
	}
}

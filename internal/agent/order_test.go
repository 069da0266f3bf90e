package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshpki/meshpki/internal/servertest"
)

// TestDefaultSVIDStaysPut maps two entries (and a third that churns) to one
// workload and fetches 20 times with go-spiffe, each time after a change
// that rebuilds what the agent serves — an entry update, a delete and
// re-create, a resync after a server restart: go-spiffe's default SVID, the
// first of the response, is always the oldest entry's, and an X509Source
// built once keeps reporting it.
func TestDefaultSVIDStaysPut(t *testing.T) {
	f := newFixture(t)
	node := "spiffe://" + td + "/node/order"
	oldest := "spiffe://" + td + "/app/oldest"
	churnID := "spiffe://" + td + "/app/churn"
	f.entry(t, oldest, node, uidSelector())
	f.entry(t, "spiffe://"+td+"/app/second", node, uidSelector())
	churn := f.entry(t, churnID, node, uidSelector())
	f.startAgent(t, f.joinToken(t, node))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := workloadapi.WithAddr("unix://" + f.sock)
	// fetchWith waits until the churning entry's SVID carries dns, then
	// returns the whole response.
	fetchWith := func(i int, dns string) []*x509svid.SVID {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			svids, err := workloadapi.FetchX509SVIDs(ctx, addr)
			if err == nil {
				for _, s := range svids {
					if s.ID.String() == churnID && slices.Contains(s.Certificates[0].DNSNames, dns) {
						return svids
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("fetch %d: the churning SVID never carried %s (%v)", i, dns, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	reg := f.in.Server.Registration()
	churn.DNSNames = []string{"c-start.test.internal"}
	var err error
	if churn, err = reg.UpdateEntry(ctx, churn, "test"); err != nil {
		t.Fatal(err)
	}
	fetchWith(-1, "c-start.test.internal")
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	for i := range 20 {
		dns := fmt.Sprintf("c%d.test.internal", i)
		switch i {
		case 10: // the server restarts: the agent resyncs from a snapshot
			dataDir := f.in.DataDir
			f.in.Stop()
			f.in = servertest.Start(t, servertest.Options{DataDir: dataDir, Listen: f.listen})
			reg = f.in.Server.Registration()
		case 15: // delete and create again: a new, younger entry
			if err := reg.DeleteEntry(ctx, churn.ID, "test"); err != nil {
				t.Fatal(err)
			}
			churn = f.entry(t, churnID, node, uidSelector())
		}
		churn.DNSNames = []string{dns}
		if churn, err = reg.UpdateEntry(ctx, churn, "test"); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		svids := fetchWith(i, dns)
		if got := svids[0].ID.String(); got != oldest {
			t.Fatalf("fetch %d: default SVID is %s, want the oldest entry's %s (of %d)", i, got, oldest, len(svids))
		}
		if got, err := src.GetX509SVID(); err != nil || got.ID.String() != oldest {
			t.Fatalf("fetch %d: X509Source default is %v (%v), want %s", i, got, err, oldest)
		}
	}
	if n := f.agent.Status().SyncStreams; n < 2 {
		t.Fatalf("sync streams opened: %d; the restart should have caused a resync", n)
	}
}

package monitor

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

func openStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func addSchedule(t *testing.T, st store.ScanSchedules, name string, targets ...string) {
	t.Helper()
	s := &Schedules{Store: st}
	if _, err := s.Add(context.Background(), "test", store.ScanSchedule{Name: name, Targets: targets, Every: time.Hour}, ScheduleOptions{SNI: "svc.test"}); err != nil {
		t.Fatal(err)
	}
}

// A scheduled scan never reaches loopback unless the guard allows it, and a
// failed target leaves what was seen under its scope as it was.
func TestSchedulerGuardAndRecord(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, leafSpec{})
	addr := serveTLS(t, chain, key)
	st := openStore(t)
	inv := &Inventory{Store: st, Policy: &Policy{Roots: p.roots}}
	addSchedule(t, st, "local", addr)

	refused := &Scheduler{Store: st, Inventory: inv}
	if n := refused.RunDue(context.Background()); n != 1 {
		t.Fatalf("ran %d schedules, want 1", n)
	}
	list, err := st.ListSchedules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list[0].LastError, "loopback address, which the server does not connect to") {
		t.Fatalf("last error = %q, want a loopback refusal", list[0].LastError)
	}
	if page, _ := st.ListInventory(context.Background(), store.InventoryFilter{Source: store.SourceScanned}); len(page.Items) != 0 {
		t.Fatalf("a refused scan recorded %d items", len(page.Items))
	}
	if n := refused.RunDue(context.Background()); n != 0 {
		t.Fatalf("ran %d schedules again before their interval", n)
	}

	allowed := &Scheduler{Store: st, Inventory: inv, Guard: netguard.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	sc := list[0]
	results, err := allowed.RunSchedule(context.Background(), sc)
	if err != nil || len(results) != 1 || len(results[0].Certs) != 2 {
		t.Fatalf("allowed run: %v %+v", err, results)
	}
	it, sightings, err := st.GetScanned(context.Background(), Fingerprint256(chain[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !it.Active || len(sightings) != 1 || sightings[0].Location != addr || sightings[0].Scope != addr {
		t.Fatalf("recorded %+v at %+v", it, sightings)
	}
	if len(it.Findings) != 0 {
		t.Fatalf("findings of a healthy chain: %+v", it.Findings)
	}
}

func TestCovered(t *testing.T) {
	results := []Result{
		{Scope: "10.0.0.0/30:443", Target: "10.0.0.1:443", Silent: true, Error: "connect: refused"},
		{Scope: "10.0.0.0/30:443", Target: "10.0.0.2:443"},
		{Scope: "db:5432", Target: "db:5432", Error: "TLS handshake: timeout"},
		{Scope: "/etc/ssl", Target: "/etc/ssl/a.pem"},
	}
	got := Covered(results)
	if strings.Join(got, " ") != "10.0.0.0/30:443 /etc/ssl" {
		t.Fatalf("Covered = %v", got)
	}
}

func TestScheduleChecks(t *testing.T) {
	st := openStore(t)
	s := &Schedules{Store: st}
	ctx := context.Background()
	for _, c := range []struct {
		sc   store.ScanSchedule
		want string
	}{
		{store.ScanSchedule{Name: "", Targets: []string{"a:443"}, Every: time.Hour}, "schedule name"},
		{store.ScanSchedule{Name: "x", Every: time.Hour}, "at least one target"},
		{store.ScanSchedule{Name: "x", Targets: []string{"a:443"}, Every: time.Second}, "shorter than"},
		{store.ScanSchedule{Name: "x", Targets: []string{"/etc/ssl"}, Every: time.Hour}, "endpoints only"},
		{store.ScanSchedule{Name: "x", Targets: []string{"10.0.0.0/8:443"}, Every: time.Hour}, "--allow-large"},
	} {
		_, err := s.Add(ctx, "test", c.sc, ScheduleOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.sc, err, c.want)
		}
	}
	if list, _ := st.ListSchedules(ctx); len(list) != 0 {
		t.Fatalf("refused schedules were stored: %+v", list)
	}
	addSchedule(t, st, "edge", "a.example:443")
	if _, err := s.Add(ctx, "test", store.ScanSchedule{Name: "edge", Targets: []string{"b:443"}, Every: time.Hour}, ScheduleOptions{}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.Remove(ctx, "test", "edge"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "test", "edge"); err == nil || !strings.Contains(err.Error(), "no scan schedule") {
		t.Fatalf("second remove: %v", err)
	}
	events, err := st.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type+":"+e.Subject)
	}
	if strings.Join(types, " ") != audit.TypeScheduleAdded+":edge "+audit.TypeScheduleRemoved+":edge" {
		t.Fatalf("audit = %v, want the add and the remove alone", types)
	}
}

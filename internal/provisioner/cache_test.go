package provisioner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// TestCacheReadsAgainAfterTTL: a change made behind the cache's back (as
// on another replica) shows after the TTL, at once after Invalidate, and
// lists by type follow.
func TestCacheReadsAgainAfterTTL(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := NewCache(st, time.Second, clock)
	ev := func(name string) audit.Event {
		return audit.Event{Time: now, Type: audit.TypeProvisionerAdded, Actor: "test", Subject: name, Outcome: "success"}
	}
	web := store.Provisioner{Name: "web", Type: store.ProvisionerToken, Policy: policy.Policy{AllowDNS: []string{"*.example.internal"}}}
	if err := st.CreateProvisioner(ctx, web, ev("web")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Provisioner(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing provisioner: %v", err)
	}
	got, err := c.Provisioner(ctx, "web")
	if err != nil || got.Provisioner.Type != store.ProvisionerToken || !got.Policy.Evaluate(policy.Request{Names: policy.Names{DNS: []string{"a.example.internal"}}}).Allowed {
		t.Fatalf("web: %+v %v", got, err)
	}
	if l, err := c.OfType(ctx, store.ProvisionerSPIFFE); err != nil || len(l) != 0 {
		t.Fatalf("spiffe list: %v %v", l, err)
	}

	// Another replica narrows web and adds a spiffe provisioner.
	web.Policy.AllowDNS = []string{"*.other.internal"}
	if err := st.UpdateProvisioner(ctx, web, ev("web")); err != nil {
		t.Fatal(err)
	}
	apps := store.Provisioner{Name: "apps", Type: store.ProvisionerSPIFFE, Policy: policy.Policy{AllowURI: []string{"spiffe://td/app/"}}}
	if err := st.CreateProvisioner(ctx, apps, ev("apps")); err != nil {
		t.Fatal(err)
	}
	allowedOld := func() bool {
		got, err := c.Provisioner(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		return got.Policy.Evaluate(policy.Request{Names: policy.Names{DNS: []string{"a.example.internal"}}}).Allowed
	}
	if !allowedOld() {
		t.Fatal("the cache read the store again within its TTL")
	}
	if l, _ := c.OfType(ctx, store.ProvisionerSPIFFE); len(l) != 0 {
		t.Fatal("the list by type was read again within the TTL")
	}
	now = now.Add(time.Second)
	if allowedOld() {
		t.Fatal("the old policy still applies after the TTL")
	}
	if l, _ := c.OfType(ctx, store.ProvisionerSPIFFE); len(l) != 1 || l[0].Provisioner.Name != "apps" {
		t.Fatalf("spiffe list after the TTL: %+v", l)
	}

	// Invalidate applies a change at once.
	if err := st.DeleteProvisioner(ctx, "apps", ev("apps")); err != nil {
		t.Fatal(err)
	}
	c.Invalidate("apps")
	if l, _ := c.OfType(ctx, store.ProvisionerSPIFFE); len(l) != 0 {
		t.Fatalf("spiffe list after Invalidate: %+v", l)
	}
}

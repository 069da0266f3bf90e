package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

var alertTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"AlertChannelsAndRules", testAlertChannelsAndRules},
	{"AlertStatesAndOutbox", testAlertStatesAndOutbox},
	{"NotificationClaimedOnce", testNotificationClaimedOnce},
	{"UnfinishedNotificationsReleased", testNotificationsReleased},
	{"ManyAlertsAtOnceLastStateWins", testManyAlerts},
}

// testManyAlerts: a first evaluation over a large inventory writes more
// alerts than one batch holds; a key given twice keeps its last state.
func testManyAlerts(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 12_001
	alerts := make([]store.Alert, 0, n+1)
	for i := range n {
		alerts = append(alerts, store.Alert{Key: fmt.Sprintf("k%05d", i), Rule: "r", Channel: "ops", Certificate: fmt.Sprintf("issued:%x", i),
			Check: "expired", Severity: "critical", Summary: "expired", State: store.AlertFiring, FiredAt: epoch})
	}
	alerts = append(alerts, store.Alert{Key: "k05000", Rule: "r", State: store.AlertResolved, FiredAt: epoch, ResolvedAt: epoch.Add(time.Minute)})
	if err := s.ApplyAlerts(ctx, alerts, nil); err != nil {
		t.Fatal(err)
	}
	var got []store.Alert
	for after := ""; ; {
		page, next, err := s.ListAlerts(ctx, store.AlertFilter{After: after, Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != n || got[n-1].Key != "k12000" || got[n-1].Certificate != "issued:2ee0" || !got[n-1].LastNotified.IsZero() {
		t.Fatalf("%d alerts, last %+v", len(got), got[len(got)-1])
	}
	if a := got[5000]; a.Key != "k05000" || a.State != store.AlertResolved {
		t.Fatalf("the key given twice: %+v", a)
	} else {
		checkTime(t, "ResolvedAt", a.ResolvedAt, epoch.Add(time.Minute))
	}
}

func testAlertChannelsAndRules(t *testing.T, s store.Store) {
	ctx := context.Background()
	ch := store.AlertChannel{Name: "ops", Kind: "webhook", Default: true, Public: []byte(`{"host":"hooks.example"}`), Sealed: []byte{1, 2, 3}, CreatedAt: epoch}
	before := head(t, s)
	if err := s.CreateChannel(ctx, ch, newEvent("alert.channel_added", "ops")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChannel(ctx, ch, newEvent("alert.channel_added", "ops")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate channel: %v", err)
	}
	got, err := s.GetChannel(ctx, "ops")
	if err != nil || got.Kind != "webhook" || !got.Default || string(got.Public) != string(ch.Public) || string(got.Sealed) != string(ch.Sealed) {
		t.Fatalf("channel = %+v, %v", got, err)
	}
	checkTime(t, "CreatedAt", got.CreatedAt, epoch)
	if _, err := s.GetChannel(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}
	if err := s.CreateRule(ctx, store.AlertRule{Name: "r", Channel: "nope", Spec: []byte(`{}`)}, newEvent("alert.rule_added", "r")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rule without its channel: %v", err)
	}
	if err := s.CreateRule(ctx, store.AlertRule{Name: "r", Channel: "ops", Spec: []byte(`{"within":"14d"}`)}, newEvent("alert.rule_added", "r")); err != nil {
		t.Fatal(err)
	}
	rules, err := s.ListRules(ctx)
	if err != nil || len(rules) != 1 || rules[0].Channel != "ops" || string(rules[0].Spec) != `{"within":"14d"}` {
		t.Fatalf("rules = %+v, %v", rules, err)
	}
	if err := s.DeleteChannel(ctx, "ops", newEvent("alert.channel_removed", "ops")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("deleting a channel a rule uses: %v", err)
	}
	if err := s.DeleteRule(ctx, "r", newEvent("alert.rule_removed", "r")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRule(ctx, "r", newEvent("alert.rule_removed", "r")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second rule delete: %v", err)
	}
	if err := s.DeleteChannel(ctx, "ops", newEvent("alert.channel_removed", "ops")); err != nil {
		t.Fatal(err)
	}
	if n := head(t, s) - before; n != 4 {
		t.Fatalf("%d audit events, want 4 (each change that happened)", n)
	}
	if list, _ := s.ListChannels(ctx); len(list) != 0 {
		t.Fatalf("channels left: %+v", list)
	}
}

func testAlertStatesAndOutbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := store.Alert{Key: "k1", Rule: "r", Channel: "ops", Certificate: "scanned:ab", Check: "expires_soon", Threshold: "14d",
		Severity: "warning", Summary: "expires in 13d", Labels: []byte(`{"team":"pay"}`), State: store.AlertFiring, FiredAt: epoch, LastNotified: epoch}
	n := store.Notification{Channel: "ops", Status: store.AlertFiring, Alerts: 1, Payload: []byte(`{"version":"4"}`), CreatedAt: epoch}
	if err := s.ApplyAlerts(ctx, []store.Alert{a, {Key: "k0", Rule: "r", State: store.AlertResolved, FiredAt: epoch, ResolvedAt: epoch}}, []store.Notification{n}); err != nil {
		t.Fatal(err)
	}
	firing, next, err := s.ListAlerts(ctx, store.AlertFilter{State: store.AlertFiring})
	if err != nil || next != "" || len(firing) != 1 {
		t.Fatalf("firing = %+v %q %v", firing, next, err)
	}
	got := firing[0]
	if got.Key != "k1" || got.Threshold != "14d" || string(got.Labels) != `{"team":"pay"}` || !got.AbsentSince.IsZero() || !got.ResolvedAt.IsZero() {
		t.Fatalf("alert = %+v", got)
	}
	checkTime(t, "LastNotified", got.LastNotified, epoch)
	// Replaced by key.
	a.State, a.ResolvedAt = store.AlertResolved, epoch.Add(time.Hour)
	if err := s.ApplyAlerts(ctx, []store.Alert{a}, nil); err != nil {
		t.Fatal(err)
	}
	all, _, _ := s.ListAlerts(ctx, store.AlertFilter{Limit: 1})
	if len(all) != 1 || all[0].Key != "k0" {
		t.Fatalf("first page = %+v", all)
	}
	if firing, _, _ := s.ListAlerts(ctx, store.AlertFilter{State: store.AlertFiring}); len(firing) != 0 {
		t.Fatalf("still firing: %+v", firing)
	}

	if _, err := s.ClaimNotification(ctx, epoch.Add(-time.Second), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim before due: %v", err)
	}
	c, err := s.ClaimNotification(ctx, epoch, time.Minute)
	if err != nil || c.Channel != "ops" || string(c.Payload) != `{"version":"4"}` || c.Alerts != 1 {
		t.Fatalf("claimed %+v, %v", c, err)
	}
	checkTime(t, "leased NextAttempt", c.NextAttempt, epoch.Add(time.Minute))
	if _, err := s.ClaimNotification(ctx, epoch.Add(30*time.Second), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claimed again within the lease: %v", err)
	}
	c.Attempts, c.LastError, c.NextAttempt = 1, "503 Service Unavailable", epoch.Add(2*time.Minute)
	if err := s.FinishNotification(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, err = s.ClaimNotification(ctx, epoch.Add(2*time.Minute), time.Minute)
	if err != nil || c.Attempts != 1 || c.LastError != "503 Service Unavailable" {
		t.Fatalf("retry claim %+v, %v", c, err)
	}
	c.Attempts, c.LastError, c.DeliveredAt = 2, "", epoch.Add(2*time.Minute)
	if err := s.FinishNotification(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimNotification(ctx, epoch.Add(24*time.Hour), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a delivered notification was claimed: %v", err)
	}
	history, err := s.ListNotifications(ctx, 10)
	if err != nil || len(history) != 1 || history[0].DeliveredAt.IsZero() || history[0].Attempts != 2 {
		t.Fatalf("history = %+v, %v", history, err)
	}
}

func testNotificationClaimedOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	var queue []store.Notification
	for range 5 {
		queue = append(queue, store.Notification{Channel: "ops", Status: store.AlertFiring, Alerts: 1, Payload: []byte(`{}`), CreatedAt: epoch})
	}
	if err := s.ApplyAlerts(ctx, nil, queue); err != nil {
		t.Fatal(err)
	}
	ids := make(chan int64, 10)
	for range 10 {
		go func() {
			n, err := s.ClaimNotification(ctx, epoch, time.Hour)
			if err != nil {
				ids <- 0
				return
			}
			ids <- n.ID
		}()
	}
	seen := map[int64]bool{}
	for range 10 {
		if id := <-ids; id != 0 {
			if seen[id] {
				t.Fatalf("notification %d claimed twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("claimed %d notifications, want 5", len(seen))
	}
}

// A notification claimed and never finished (its leader died) is due at
// once after a release; a finished one, delivered or retrying, is not
// touched.
func testNotificationsReleased(t *testing.T, s store.Store) {
	ctx := context.Background()
	var queue []store.Notification
	for range 3 {
		queue = append(queue, store.Notification{Channel: "ops", Status: store.AlertFiring, Alerts: 1, Payload: []byte(`{}`), CreatedAt: epoch, NextAttempt: epoch})
	}
	if err := s.ApplyAlerts(ctx, nil, queue); err != nil {
		t.Fatal(err)
	}
	var claimed []store.Notification
	for range 3 {
		n, err := s.ClaimNotification(ctx, epoch, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, n)
	}
	delivered, retrying, unfinished := claimed[0], claimed[1], claimed[2]
	delivered.Attempts, delivered.DeliveredAt = 1, epoch
	retrying.Attempts, retrying.NextAttempt, retrying.LastError = 1, epoch.Add(30*time.Minute), "503"
	for _, n := range []store.Notification{delivered, retrying} {
		if err := s.FinishNotification(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	at := epoch.Add(time.Minute)
	if _, err := s.ClaimNotification(ctx, at, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claimed within the lease: %v", err)
	}
	if n, err := s.ReleaseNotifications(ctx, at); err != nil || n != 1 {
		t.Fatalf("released %d, %v; want the one unfinished", n, err)
	}
	n, err := s.ClaimNotification(ctx, at, time.Hour)
	if err != nil || n.ID != unfinished.ID {
		t.Fatalf("after the release claimed %+v, %v; want notification %d", n, err, unfinished.ID)
	}
	if _, err := s.ClaimNotification(ctx, at, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the release touched a finished notification: %v", err)
	}
	n.Attempts, n.DeliveredAt = 1, at
	if err := s.FinishNotification(ctx, n); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReleaseNotifications(ctx, at); err != nil || n != 0 {
		t.Fatalf("released %d finished notifications, %v", n, err)
	}
}

package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

var uiTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"UILoginRedeemsOnceIntoASession", testUILogin},
}

func testUILogin(t *testing.T, s store.Store) {
	ctx := context.Background()
	before := head(t, s)
	login := store.UILogin{TokenHash: "aa01", Admin: "admin:spiffe://td/meshpki/admin/bootstrap", ExpiresAt: epoch.Add(5 * time.Minute)}
	if err := s.CreateUILogin(ctx, login, newEvent("ui.login_created", "aa01")); err != nil {
		t.Fatal(err)
	}
	sess := store.UISession{IDHash: "bb02", CSRF: "csrf-1", CreatedAt: epoch, ExpiresAt: epoch.Add(8 * time.Hour)}
	ev := func(admin string) audit.Event { return newEvent("ui.signed_in", admin) }
	if _, err := s.RedeemUILogin(ctx, "aa01", sess, epoch.Add(6*time.Minute), ev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("redeemed after expiry: %v", err)
	}
	got, err := s.RedeemUILogin(ctx, "aa01", sess, epoch.Add(time.Minute), ev)
	if err != nil || got.Admin != login.Admin || got.CSRF != "csrf-1" {
		t.Fatalf("redeem: %+v %v", got, err)
	}
	if _, err := s.RedeemUILogin(ctx, "aa01", store.UISession{IDHash: "bb03", CSRF: "x", CreatedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}, epoch.Add(time.Minute), ev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("redeemed twice: %v", err)
	}
	if _, err := s.RedeemUILogin(ctx, "nope", sess, epoch, ev); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown login: %v", err)
	}
	if _, err := s.GetUISession(ctx, "bb03", epoch); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a refused redemption left a session")
	}
	stored, err := s.GetUISession(ctx, "bb02", epoch.Add(time.Hour))
	if err != nil || stored.Admin != login.Admin || stored.CSRF != "csrf-1" || !stored.ExpiresAt.Equal(µs(sess.ExpiresAt)) {
		t.Fatalf("get: %+v %v", stored, err)
	}
	if _, err := s.GetUISession(ctx, "bb02", epoch.Add(9*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired session: %v", err)
	}
	if err := s.DeleteUISession(ctx, "bb02", newEvent("ui.signed_out", "bb02")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUISession(ctx, "bb02", newEvent("ui.signed_out", "bb02")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if h := head(t, s); h != before+3 {
		t.Fatalf("audit head moved by %d, want 3 (login created, signed in, signed out)", h-before)
	}
	if err := s.CreateUILogin(ctx, store.UILogin{TokenHash: "cc", Admin: "a", ExpiresAt: epoch}, newEvent("ui.login_created", "cc")); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneUI(ctx, epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

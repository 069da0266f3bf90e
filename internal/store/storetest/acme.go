package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// acmeTests check store.ACME; Run runs them with the rest.
var acmeTests = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"ACMEAccountRoundTrip", testACMEAccountRoundTrip},
	{"ACMEAccountDuplicateThumbprintIsConflict", testACMEAccountDuplicate},
	{"ACMEAccountBindsEABKeyOnce", testACMEAccountEAB},
	{"ACMEAccountUpdateAndRollover", testACMEAccountUpdate},
	{"ACMEOrderRoundTripsEveryField", testACMEOrderRoundTrip},
	{"ACMEOrderErrors", testACMEOrderErrors},
	{"ACMEOrderHappyPath", testACMEHappyPath},
	{"ACMEInvalidChallengeInvalidatesOrder", testACMEInvalidChallenge},
	{"ACMEStartChallengeTwiceIsStateChanged", testACMEStartTwice},
	{"ACMEStaleValidations", testACMEStaleValidations},
	{"ACMEFinalizeNeedsReadyOrder", testACMEFinalizeNotReady},
	{"ACMEFinalizeFailureStoresProblem", testACMEFinalizeFailure},
	{"ACMEFinishBatchReportsEachItem", testACMEFinishBatch},
	{"ACMEConcurrentFinishReadiesOrderOnce", testACMEConcurrentFinish},
	{"ACMEDeactivateAuthorization", testACMEDeactivate},
	{"ACMEReplacesConflict", testACMEReplaces},
	{"ACMEOrderByCertificate", testACMEOrderByCertificate},
	{"ACMEListOrdersPages", testACMEListOrders},
	{"ACMEEABKeys", testACMEEABKeys},
}

// Audit event types of the ACME fixtures.
const (
	typeACMEAccount = "acme.account"
	typeACMEEABKey  = "acme.eab_key"
)

// newID returns a random id such as the ACME server makes.
func newID(prefix string) string {
	b := make([]byte, 9)
	rand.Read(b) // never fails
	return prefix + hex.EncodeToString(b)
}

// newAccount returns a valid account of provisioner good-acme.
func newAccount() store.ACMEAccount {
	id := newID("acct-")
	return store.ACMEAccount{
		ID:          id,
		Provisioner: "good-acme",
		Thumbprint:  newID("thumb-"),
		KeyJWK:      []byte(`{"kty":"EC","crv":"P-256","x":"` + id + `","y":"y"}`),
		Status:      store.ACMEValid,
		Contact:     []string{"mailto:ops@example.com", "mailto:sec@example.com"},
		CreatedAt:   epoch,
	}
}

func mustCreateAccount(t testing.TB, s store.Store, a store.ACMEAccount) store.ACMEAccount {
	t.Helper()
	if err := s.CreateACMEAccount(context.Background(), a, newEvent(typeACMEAccount, a.ID)); err != nil {
		t.Fatalf("CreateACMEAccount: %v", err)
	}
	return a
}

func checkAccount(t testing.TB, got, want store.ACMEAccount) {
	t.Helper()
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("account round trip:\n got %+v\nwant %+v", got, want)
	}
}

// newOrder returns a pending order of account with an authorization for
// each name, each with an http-01 and a dns-01 challenge.
func newOrder(account store.ACMEAccount, names ...string) (store.ACMEOrder, []store.ACMEAuthorization) {
	o := store.ACMEOrder{
		ID:          newID("order-"),
		AccountID:   account.ID,
		Provisioner: account.Provisioner,
		Status:      store.ACMEPending,
		Expires:     epoch.Add(7 * 24 * time.Hour),
		CreatedAt:   epoch,
		UpdatedAt:   epoch,
	}
	var authzs []store.ACMEAuthorization
	for _, name := range names {
		id := store.ACMEIdentifier{Type: "dns", Value: name}
		o.Identifiers = append(o.Identifiers, id)
		az := store.ACMEAuthorization{
			ID:         newID("authz-"),
			AccountID:  account.ID,
			OrderID:    o.ID,
			Identifier: id,
			Status:     store.ACMEPending,
			Expires:    epoch.Add(24 * time.Hour),
			Challenges: []store.ACMEChallenge{
				{ID: newID("chall-"), Type: "http-01", Token: newID("token-"), Status: store.ACMEPending},
				{ID: newID("chall-"), Type: "dns-01", Token: newID("token-"), Status: store.ACMEPending},
			},
		}
		o.Authorizations = append(o.Authorizations, az.ID)
		authzs = append(authzs, az)
	}
	return o, authzs
}

func mustCreateOrder(t testing.TB, s store.Store, o store.ACMEOrder, authzs []store.ACMEAuthorization) {
	t.Helper()
	if err := s.CreateACMEOrder(context.Background(), o, authzs); err != nil {
		t.Fatalf("CreateACMEOrder: %v", err)
	}
}

func mustGetOrder(t testing.TB, s store.Store, id string) store.ACMEOrder {
	t.Helper()
	o, err := s.GetACMEOrder(context.Background(), id)
	if err != nil {
		t.Fatalf("GetACMEOrder(%s): %v", id, err)
	}
	return o
}

func mustGetAuthz(t testing.TB, s store.Store, id string) store.ACMEAuthorization {
	t.Helper()
	az, err := s.GetACMEAuthorization(context.Background(), id)
	if err != nil {
		t.Fatalf("GetACMEAuthorization(%s): %v", id, err)
	}
	return az
}

// wantStatus checks the statuses of an order and its authorizations.
func wantStatus(t testing.TB, s store.Store, orderID, order string, authzs map[string]string) {
	t.Helper()
	if got := mustGetOrder(t, s, orderID).Status; got != order {
		t.Errorf("order status %s, want %s", got, order)
	}
	for id, want := range authzs {
		if got := mustGetAuthz(t, s, id).Status; got != want {
			t.Errorf("authorization %s status %s, want %s", id, got, want)
		}
	}
}

func checkOrder(t testing.TB, got, want store.ACMEOrder) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"Expires", got.Expires, want.Expires},
		{"NotBefore", got.NotBefore, want.NotBefore},
		{"NotAfter", got.NotAfter, want.NotAfter},
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"UpdatedAt", got.UpdatedAt, want.UpdatedAt},
	} {
		checkTime(t, f.name, f.got, f.want)
	}
	got.Expires, got.NotBefore, got.NotAfter, got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	want.Expires, want.NotBefore, want.NotAfter, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order round trip:\n got %+v\nwant %+v", got, want)
	}
}

func checkAuthz(t testing.TB, got, want store.ACMEAuthorization) {
	t.Helper()
	checkTime(t, "Expires", got.Expires, want.Expires)
	got.Expires, want.Expires = time.Time{}, time.Time{}
	if len(got.Challenges) != len(want.Challenges) {
		t.Fatalf("authorization %s: %d challenges, want %d", want.ID, len(got.Challenges), len(want.Challenges))
	}
	got.Challenges, want.Challenges = slices.Clone(got.Challenges), slices.Clone(want.Challenges)
	for i := range want.Challenges {
		checkTime(t, "Validated", got.Challenges[i].Validated, want.Challenges[i].Validated)
		got.Challenges[i].Validated, want.Challenges[i].Validated = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("authorization round trip:\n got %+v\nwant %+v", got, want)
	}
}

// startAll starts the first challenge of every authorization.
func startAll(t testing.TB, s store.Store, authzs []store.ACMEAuthorization) {
	t.Helper()
	for _, az := range authzs {
		if err := s.StartACMEChallenge(context.Background(), az.ID, az.Challenges[0].ID); err != nil {
			t.Fatalf("StartACMEChallenge(%s): %v", az.ID, err)
		}
	}
}

// finish records the result of the first challenge of az.
func finish(t testing.TB, s store.Store, az store.ACMEAuthorization, valid bool, problem []byte) error {
	t.Helper()
	results, err := s.FinishACMEChallenges(context.Background(), []store.ChallengeResult{{
		AuthorizationID: az.ID, ChallengeID: az.Challenges[0].ID, Valid: valid, Error: problem, At: epoch.Add(time.Minute),
	}})
	if err != nil {
		t.Fatalf("FinishACMEChallenges: %v", err)
	}
	if len(results) != 1 {
		t.Fatalf("FinishACMEChallenges returned %d results for 1 item", len(results))
	}
	return results[0]
}

func testACMEAccountRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	got, err := s.GetACMEAccount(ctx, a.ID)
	if err != nil {
		t.Fatalf("GetACMEAccount: %v", err)
	}
	checkAccount(t, got, a)
	got, err = s.GetACMEAccountByThumbprint(ctx, a.Provisioner, a.Thumbprint)
	if err != nil {
		t.Fatalf("GetACMEAccountByThumbprint: %v", err)
	}
	checkAccount(t, got, a)

	for name, lookup := range map[string]func() error{
		"unknown id":            func() error { _, err := s.GetACMEAccount(ctx, "acct-missing"); return err },
		"unknown thumbprint":    func() error { _, err := s.GetACMEAccountByThumbprint(ctx, a.Provisioner, "thumb-missing"); return err },
		"thumbprint, other CA":  func() error { _, err := s.GetACMEAccountByThumbprint(ctx, "other-acme", a.Thumbprint); return err },
		"account id as thumb":   func() error { _, err := s.GetACMEAccountByThumbprint(ctx, a.Provisioner, a.ID); return err },
		"thumbprint as account": func() error { _, err := s.GetACMEAccount(ctx, a.Thumbprint); return err },
	} {
		if err := lookup(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}

	// Zero Status and CreatedAt are filled in.
	before := time.Now().Truncate(time.Microsecond)
	fresh := newAccount()
	fresh.Status, fresh.CreatedAt, fresh.Contact = "", time.Time{}, nil
	mustCreateAccount(t, s, fresh)
	got, err = s.GetACMEAccount(ctx, fresh.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.ACMEValid || got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now()) || len(got.Contact) != 0 {
		t.Errorf("account created with zero fields: %+v, want valid, created now, no contact", got)
	}

	want := []string{typeACMEAccount + ":" + a.ID, typeACMEAccount + ":" + fresh.ID}
	if got := auditSubjects(allAudit(t, s)); !slices.Equal(got, want) {
		t.Errorf("audit log %v, want %v", got, want)
	}
}

func testACMEAccountDuplicate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	clash := newAccount()
	clash.Thumbprint = a.Thumbprint
	if err := s.CreateACMEAccount(ctx, clash, newEvent(typeACMEAccount, clash.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateACMEAccount with a taken thumbprint = %v, want ErrConflict", err)
	}
	if _, err := s.GetACMEAccount(ctx, clash.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused account was created: %v", err)
	}
	sameID := newAccount()
	sameID.ID = a.ID
	if err := s.CreateACMEAccount(ctx, sameID, newEvent(typeACMEAccount, sameID.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateACMEAccount with a taken id = %v, want ErrConflict", err)
	}
	// The thumbprint is unique within a provisioner only.
	other := newAccount()
	other.Provisioner, other.Thumbprint = "other-acme", a.Thumbprint
	mustCreateAccount(t, s, other)
	if got := head(t, s); got != 2 {
		t.Errorf("audit head %d, want 2 (refused accounts append nothing)", got)
	}
}

func testACMEAccountEAB(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.ACMEEABKey{ID: newID("kid-"), Provisioner: "good-acme", Key: []byte("sealed-hmac-key"), CreatedAt: epoch}
	if err := s.CreateACMEEABKey(ctx, key, newEvent(typeACMEEABKey, key.ID)); err != nil {
		t.Fatalf("CreateACMEEABKey: %v", err)
	}
	otherCA := store.ACMEEABKey{ID: newID("kid-"), Provisioner: "other-acme", Key: []byte("k"), CreatedAt: epoch}
	if err := s.CreateACMEEABKey(ctx, otherCA, newEvent(typeACMEEABKey, otherCA.ID)); err != nil {
		t.Fatal(err)
	}

	for name, kid := range map[string]string{"unknown key": "kid-missing", "key of another provisioner": otherCA.ID} {
		a := newAccount()
		a.EABKeyID = kid
		if err := s.CreateACMEAccount(ctx, a, newEvent(typeACMEAccount, a.ID)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: CreateACMEAccount = %v, want ErrNotFound", name, err)
		}
		if _, err := s.GetACMEAccount(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the account was created: %v", name, err)
		}
	}

	bound := newAccount()
	bound.EABKeyID = key.ID
	bound.CreatedAt = epoch.Add(time.Hour)
	mustCreateAccount(t, s, bound)
	got, err := s.GetACMEEABKey(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.BoundAccount != bound.ID {
		t.Errorf("key bound to %q, want %q", got.BoundAccount, bound.ID)
	}
	checkTime(t, "BoundAt", got.BoundAt, bound.CreatedAt)
	acct, err := s.GetACMEAccount(ctx, bound.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkAccount(t, acct, bound)

	again := newAccount()
	again.EABKeyID = key.ID
	if err := s.CreateACMEAccount(ctx, again, newEvent(typeACMEAccount, again.ID)); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("CreateACMEAccount with a bound key = %v, want ErrStateChanged", err)
	}
	if _, err := s.GetACMEAccountByThumbprint(ctx, again.Provisioner, again.Thumbprint); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("account refused for a bound key was created: %v", err)
	}
	if got, err := s.GetACMEEABKey(ctx, key.ID); err != nil || got.BoundAccount != bound.ID {
		t.Errorf("key after a refused second binding: %+v, %v; want it bound to %s", got, err, bound.ID)
	}
	if got := head(t, s); got != 3 {
		t.Errorf("audit head %d, want 3 (two keys, one account)", got)
	}
}

func testACMEAccountUpdate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	b := mustCreateAccount(t, s, newAccount())

	rolled := a
	rolled.Thumbprint = newID("thumb-")
	rolled.KeyJWK = []byte(`{"kty":"OKP","crv":"Ed25519","x":"new"}`)
	rolled.Contact = []string{"mailto:new@example.com"}
	if err := s.UpdateACMEAccount(ctx, rolled, newEvent(typeACMEAccount, a.ID)); err != nil {
		t.Fatalf("UpdateACMEAccount: %v", err)
	}
	got, err := s.GetACMEAccountByThumbprint(ctx, a.Provisioner, rolled.Thumbprint)
	if err != nil {
		t.Fatalf("lookup by the new thumbprint: %v", err)
	}
	checkAccount(t, got, rolled)
	if _, err := s.GetACMEAccountByThumbprint(ctx, a.Provisioner, a.Thumbprint); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lookup by the old thumbprint: %v, want ErrNotFound", err)
	}

	// A rollover to another account's key changes nothing.
	taken := rolled
	taken.Thumbprint, taken.KeyJWK = b.Thumbprint, b.KeyJWK
	if err := s.UpdateACMEAccount(ctx, taken, newEvent(typeACMEAccount, a.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rollover to a taken thumbprint = %v, want ErrConflict", err)
	}
	if got, err := s.GetACMEAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	} else {
		checkAccount(t, got, rolled)
	}

	missing := newAccount()
	if err := s.UpdateACMEAccount(ctx, missing, newEvent(typeACMEAccount, missing.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateACMEAccount(missing) = %v, want ErrNotFound", err)
	}

	deactivated := rolled
	deactivated.Status = store.ACMEDeactivated
	if err := s.UpdateACMEAccount(ctx, deactivated, newEvent(typeACMEAccount, a.ID)); err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	revived := rolled
	if err := s.UpdateACMEAccount(ctx, revived, newEvent(typeACMEAccount, a.ID)); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("update of a deactivated account = %v, want ErrStateChanged", err)
	}
	if got, err := s.GetACMEAccount(ctx, a.ID); err != nil || got.Status != store.ACMEDeactivated {
		t.Errorf("account after refused update: %+v, %v; want it deactivated", got, err)
	}
	if got := head(t, s); got != 4 {
		t.Errorf("audit head %d, want 4 (two creations, rollover, deactivation)", got)
	}
}

func testACMEOrderRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com", "example.com")
	o.Identifiers = append(o.Identifiers[:1], store.ACMEIdentifier{Type: "dns", Value: "*.example.com"})
	authzs[1].Wildcard = true
	o.NotBefore = epoch.Add(time.Hour)
	o.NotAfter = epoch.Add(48 * time.Hour)
	o.Replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
	o.UpdatedAt = epoch.Add(time.Second)
	authzs[1].Status = store.ACMEValid
	authzs[1].Challenges[1] = store.ACMEChallenge{
		ID: newID("chall-"), Type: "tls-alpn-01", Token: "tok", Status: store.ACMEValid, Validated: epoch.Add(-time.Hour),
	}
	authzs[0].Challenges[1].Status = store.ACMEInvalid
	authzs[0].Challenges[1].Error = []byte(`{"type":"urn:ietf:params:acme:error:dns","detail":"NXDOMAIN"}`)
	mustCreateOrder(t, s, o, authzs)

	checkOrder(t, mustGetOrder(t, s, o.ID), o)
	for _, az := range authzs {
		checkAuthz(t, mustGetAuthz(t, s, az.ID), az)
	}

	// Zero statuses and times, and the ids of the order and its
	// authorizations, are filled in.
	bare, bareAuthzs := newOrder(a, "b.example.com")
	bare.Status, bare.CreatedAt, bare.UpdatedAt, bare.Authorizations = "", time.Time{}, time.Time{}, nil
	bareAuthzs[0].Status, bareAuthzs[0].OrderID, bareAuthzs[0].AccountID = "", "", ""
	bareAuthzs[0].Challenges[0].Status = ""
	before := time.Now().Truncate(time.Microsecond)
	mustCreateOrder(t, s, bare, bareAuthzs)
	got := mustGetOrder(t, s, bare.ID)
	if got.Status != store.ACMEPending || got.CreatedAt.Before(before) || !got.UpdatedAt.Equal(got.CreatedAt) ||
		!slices.Equal(got.Authorizations, []string{bareAuthzs[0].ID}) || got.NotBefore != (time.Time{}) || got.Error != nil {
		t.Errorf("order created with zero fields: %+v", got)
	}
	az := mustGetAuthz(t, s, bareAuthzs[0].ID)
	if az.Status != store.ACMEPending || az.OrderID != bare.ID || az.AccountID != a.ID || az.Challenges[0].Status != store.ACMEPending {
		t.Errorf("authorization created with zero fields: %+v", az)
	}

	if _, err := s.GetACMEOrder(ctx, "order-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetACMEOrder(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetACMEAuthorization(ctx, "authz-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetACMEAuthorization(missing) = %v, want ErrNotFound", err)
	}
}

func testACMEOrderErrors(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com")
	mustCreateOrder(t, s, o, authzs)

	sameID, sameIDAuthzs := newOrder(a, "b.example.com")
	sameID.ID = o.ID
	for i := range sameIDAuthzs {
		sameIDAuthzs[i].OrderID = o.ID
	}
	if err := s.CreateACMEOrder(ctx, sameID, sameIDAuthzs); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateACMEOrder with a taken id = %v, want ErrConflict", err)
	}
	if _, err := s.GetACMEAuthorization(ctx, sameIDAuthzs[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("authorization of the refused order was created: %v", err)
	}

	takenAuthz, takenAuthzs := newOrder(a, "c.example.com")
	takenAuthzs[0].ID = authzs[0].ID
	takenAuthz.Authorizations = []string{authzs[0].ID}
	if err := s.CreateACMEOrder(ctx, takenAuthz, takenAuthzs); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateACMEOrder with a taken authorization id = %v, want ErrConflict", err)
	}
	if _, err := s.GetACMEOrder(ctx, takenAuthz.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("order with a taken authorization id was created: %v", err)
	}

	mismatch, mismatchAuthzs := newOrder(a, "d.example.com", "e.example.com")
	mismatch.Authorizations = []string{mismatchAuthzs[1].ID, mismatchAuthzs[0].ID}
	if err := s.CreateACMEOrder(ctx, mismatch, mismatchAuthzs); err == nil {
		t.Error("CreateACMEOrder with Authorizations out of order succeeded")
	}
	foreign, foreignAuthzs := newOrder(a, "f.example.com")
	foreignAuthzs[0].OrderID = o.ID
	if err := s.CreateACMEOrder(ctx, foreign, foreignAuthzs); err == nil {
		t.Error("CreateACMEOrder with an authorization of another order succeeded")
	}
}

func testACMEHappyPath(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com", "b.example.com")
	mustCreateOrder(t, s, o, authzs)
	first, second := authzs[0], authzs[1]

	startAll(t, s, authzs)
	if got := mustGetAuthz(t, s, first.ID).Challenges; got[0].Status != store.ACMEProcessing || got[1].Status != store.ACMEPending {
		t.Errorf("challenges after start: %+v, want the first processing", got)
	}
	wantStatus(t, s, o.ID, store.ACMEPending, map[string]string{first.ID: store.ACMEPending, second.ID: store.ACMEPending})

	if err := finish(t, s, first, true, nil); err != nil {
		t.Fatalf("finish first: %v", err)
	}
	got := mustGetAuthz(t, s, first.ID)
	if ch := got.Challenges[0]; ch.Status != store.ACMEValid || ch.Error != nil {
		t.Errorf("finished challenge %+v, want valid", ch)
	}
	checkTime(t, "Validated", got.Challenges[0].Validated, epoch.Add(time.Minute))
	wantStatus(t, s, o.ID, store.ACMEPending, map[string]string{first.ID: store.ACMEValid, second.ID: store.ACMEPending})

	if err := finish(t, s, second, true, nil); err != nil {
		t.Fatalf("finish second: %v", err)
	}
	wantStatus(t, s, o.ID, store.ACMEReady, map[string]string{first.ID: store.ACMEValid, second.ID: store.ACMEValid})
	if err := finish(t, s, second, true, nil); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("finishing a valid challenge again = %v, want ErrStateChanged", err)
	}

	// Finalizing: the certificate and the order's move to valid are one
	// item of one transaction; a second finalization (here in the same
	// batch) fails its item, and its certificate is not recorded.
	first1, second1 := finalizing(o.ID), finalizing(o.ID)
	wantResults(t, commit(t, s, first1, second1), nil, store.ErrStateChanged)
	serial := first1.Certificate.Serial
	final := mustGetOrder(t, s, o.ID)
	if final.Status != store.ACMEValid || final.CertSerial != serial || final.Error != nil {
		t.Errorf("finalized order %+v, want valid with serial %s", final, serial)
	}
	if _, err := s.GetCertificate(ctx, second1.Certificate.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused finalization's certificate: %v, want ErrNotFound", err)
	}
	wantResults(t, commit(t, s, finalizing(o.ID)), store.ErrStateChanged)
	if got := mustGetOrder(t, s, o.ID); got.CertSerial != serial {
		t.Errorf("serial %s after a refused second finalization, want %s", got.CertSerial, serial)
	}
}

// finalizing is an issuance that finalizes the ACME order orderID.
func finalizing(orderID string) store.Issuance {
	it := issuance("", newCert("a.example.com", "a.example.com"))
	it.ACMEOrder = orderID
	return it
}

func testACMEInvalidChallenge(t *testing.T, s store.Store) {
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com", "b.example.com")
	mustCreateOrder(t, s, o, authzs)
	startAll(t, s, authzs)
	problem := []byte(`{"type":"urn:ietf:params:acme:error:unauthorized","detail":"wrong key authorization"}`)
	if err := finish(t, s, authzs[0], false, problem); err != nil {
		t.Fatalf("finish: %v", err)
	}
	ch := mustGetAuthz(t, s, authzs[0].ID).Challenges[0]
	if ch.Status != store.ACMEInvalid || string(ch.Error) != string(problem) || !ch.Validated.IsZero() {
		t.Errorf("failed challenge %+v, want invalid with the problem", ch)
	}
	wantStatus(t, s, o.ID, store.ACMEInvalid, map[string]string{authzs[0].ID: store.ACMEInvalid, authzs[1].ID: store.ACMEPending})
	if got := mustGetOrder(t, s, o.ID).Error; string(got) != string(problem) {
		t.Errorf("order error %s, want %s", got, problem)
	}
	// The other authorization may still finish; the order stays invalid.
	if err := finish(t, s, authzs[1], true, nil); err != nil {
		t.Fatalf("finish second: %v", err)
	}
	wantStatus(t, s, o.ID, store.ACMEInvalid, map[string]string{authzs[1].ID: store.ACMEValid})
}

func testACMEStartTwice(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com")
	mustCreateOrder(t, s, o, authzs)
	az := authzs[0]
	if err := s.StartACMEChallenge(ctx, az.ID, az.Challenges[0].ID); err != nil {
		t.Fatalf("StartACMEChallenge: %v", err)
	}
	if err := s.StartACMEChallenge(ctx, az.ID, az.Challenges[0].ID); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("second StartACMEChallenge = %v, want ErrStateChanged", err)
	}
	if err := s.StartACMEChallenge(ctx, az.ID, "chall-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("StartACMEChallenge(unknown challenge) = %v, want ErrNotFound", err)
	}
	if err := s.StartACMEChallenge(ctx, "authz-missing", az.Challenges[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("StartACMEChallenge(unknown authorization) = %v, want ErrNotFound", err)
	}
	if err := finish(t, s, az, true, nil); err != nil {
		t.Fatal(err)
	}
	// A challenge of an authorization no longer pending cannot start.
	if err := s.StartACMEChallenge(ctx, az.ID, az.Challenges[1].ID); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("StartACMEChallenge on a valid authorization = %v, want ErrStateChanged", err)
	}
	if ch := mustGetAuthz(t, s, az.ID).Challenges[1]; ch.Status != store.ACMEPending {
		t.Errorf("refused challenge is %s, want pending", ch.Status)
	}
}

// A challenge left processing is found by when it began, until its
// result is recorded.
func testACMEStaleValidations(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "stale.example.com", "done.example.com")
	mustCreateOrder(t, s, o, authzs)
	before := time.Now().Add(-time.Second)
	for _, az := range authzs {
		if err := s.StartACMEChallenge(ctx, az.ID, az.Challenges[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := finish(t, s, authzs[1], true, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.StaleACMEValidations(ctx, before, 10); err != nil || len(got) != 0 {
		t.Fatalf("validations begun after the cut-off: %v %v", got, err)
	}
	got, err := s.StaleACMEValidations(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(got) != 1 || got[0].ID != authzs[0].ID || got[0].Challenges[0].Status != store.ACMEProcessing {
		t.Fatalf("stale validations %+v, %v; want the one still processing", got, err)
	}
	if err := finish(t, s, authzs[0], false, []byte(`{"type":"urn:ietf:params:acme:error:connection"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.StaleACMEValidations(ctx, time.Now().Add(time.Hour), 10); err != nil || len(got) != 0 {
		t.Fatalf("after its result: %v %v", got, err)
	}
}

func testACMEFinalizeNotReady(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com")
	mustCreateOrder(t, s, o, authzs)
	wantResults(t, commit(t, s, finalizing(o.ID)), store.ErrStateChanged)
	if err := s.FailACMEOrder(ctx, o.ID, nil); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("FailACMEOrder of a pending order = %v, want ErrStateChanged", err)
	}
	wantStatus(t, s, o.ID, store.ACMEPending, nil)
	wantResults(t, commit(t, s, finalizing("order-missing")), store.ErrNotFound)
	if err := s.FailACMEOrder(ctx, "order-missing", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FailACMEOrder(missing) = %v, want ErrNotFound", err)
	}
}

func testACMEFinalizeFailure(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com")
	mustCreateOrder(t, s, o, authzs)
	startAll(t, s, authzs)
	if err := finish(t, s, authzs[0], true, nil); err != nil {
		t.Fatal(err)
	}
	problem := []byte(`{"type":"urn:ietf:params:acme:error:badCSR","detail":"key too small"}`)
	if err := s.FailACMEOrder(ctx, o.ID, problem); err != nil {
		t.Fatalf("FailACMEOrder: %v", err)
	}
	got := mustGetOrder(t, s, o.ID)
	if got.Status != store.ACMEInvalid || string(got.Error) != string(problem) || got.CertSerial != "" {
		t.Errorf("failed order %+v, want invalid with the problem and no serial", got)
	}
}

func testACMEFinishBatch(t *testing.T, s store.Store) {
	a := mustCreateAccount(t, s, newAccount())
	// Orders whose ids sort the other way from the items, so the store's
	// reordering by order must keep each result at its item.
	o1, authzs1 := newOrder(a, "a.example.com")
	o2, authzs2 := newOrder(a, "b.example.com", "c.example.com")
	o1.ID, o2.ID = "order-z", "order-a"
	for i := range authzs1 {
		authzs1[i].OrderID = o1.ID
	}
	for i := range authzs2 {
		authzs2[i].OrderID = o2.ID
	}
	mustCreateOrder(t, s, o1, authzs1)
	mustCreateOrder(t, s, o2, authzs2)
	startAll(t, s, authzs1)
	startAll(t, s, authzs2[:1]) // authzs2[1] stays pending: its result is stale

	at := epoch.Add(time.Minute)
	problem := []byte(`{"type":"urn:ietf:params:acme:error:connection"}`)
	items := []store.ChallengeResult{
		{AuthorizationID: authzs1[0].ID, ChallengeID: authzs1[0].Challenges[0].ID, Valid: true, At: at},
		{AuthorizationID: authzs2[1].ID, ChallengeID: authzs2[1].Challenges[0].ID, Valid: true, At: at},
		{AuthorizationID: authzs2[0].ID, ChallengeID: authzs2[0].Challenges[0].ID, Valid: false, Error: problem, At: at},
		{AuthorizationID: authzs1[0].ID, ChallengeID: authzs1[0].Challenges[0].ID, Valid: false, At: at},
		{AuthorizationID: "authz-missing", ChallengeID: "chall-missing", Valid: true, At: at},
		{AuthorizationID: authzs1[0].ID, ChallengeID: "chall-missing", Valid: true, At: at},
	}
	results, err := s.FinishACMEChallenges(context.Background(), items)
	if err != nil {
		t.Fatalf("FinishACMEChallenges: %v", err)
	}
	if len(results) != len(items) {
		t.Fatalf("%d results for %d items", len(results), len(items))
	}
	wantResults(t, results, nil, store.ErrStateChanged, nil, store.ErrStateChanged, store.ErrNotFound, store.ErrNotFound)

	wantStatus(t, s, o1.ID, store.ACMEReady, map[string]string{authzs1[0].ID: store.ACMEValid})
	wantStatus(t, s, o2.ID, store.ACMEInvalid, map[string]string{authzs2[0].ID: store.ACMEInvalid, authzs2[1].ID: store.ACMEPending})
	if ch := mustGetAuthz(t, s, authzs2[1].ID).Challenges[0]; ch.Status != store.ACMEPending {
		t.Errorf("stale item's challenge is %s, want it untouched", ch.Status)
	}

	results, err = s.FinishACMEChallenges(context.Background(), nil)
	if err != nil || len(results) != 0 {
		t.Errorf("FinishACMEChallenges(nil) = %v, %v; want no results", results, err)
	}
}

// Many replicas validate the two authorizations of each order at once, each
// result reported several times, alone and in batches that span the orders
// in random order: exactly one report of each counts, no two batches
// deadlock, and every order ends ready.
func testACMEConcurrentFinish(t *testing.T, s store.Store) {
	const (
		orders  = 12
		reports = 3 // single-item reports of each authorization's result
		batches = 4 // reports of every result in one batch
	)
	a := mustCreateAccount(t, s, newAccount())
	var all []store.ACMEAuthorization
	var ids []string
	for range orders {
		o, authzs := newOrder(a, "a.example.com", "b.example.com")
		mustCreateOrder(t, s, o, authzs)
		startAll(t, s, authzs)
		all = append(all, authzs...)
		ids = append(ids, o.ID)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins = make(map[string]int)
	)
	report := func(authzs []store.ACMEAuthorization) {
		items := make([]store.ChallengeResult, len(authzs))
		for i, az := range authzs {
			items[i] = store.ChallengeResult{AuthorizationID: az.ID, ChallengeID: az.Challenges[0].ID, Valid: true, At: epoch}
		}
		results, err := s.FinishACMEChallenges(context.Background(), items)
		if err != nil {
			t.Errorf("FinishACMEChallenges: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for i, err := range results {
			switch {
			case err == nil:
				wins[authzs[i].ID]++
			case !errors.Is(err, store.ErrStateChanged):
				t.Errorf("authorization %s: %v, want nil or ErrStateChanged", authzs[i].ID, err)
			}
		}
	}
	for range batches {
		shuffled := slices.Clone(all)
		mathrand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		wg.Go(func() { report(shuffled) })
	}
	for _, az := range all {
		for range reports {
			wg.Go(func() { report([]store.ACMEAuthorization{az}) })
		}
	}
	wg.Wait()
	for _, az := range all {
		if wins[az.ID] != 1 {
			t.Errorf("authorization %s: %d reports recorded, want 1", az.ID, wins[az.ID])
		}
	}
	for _, id := range ids {
		if got := mustGetOrder(t, s, id).Status; got != store.ACMEReady {
			t.Errorf("order %s is %s, want ready", id, got)
		}
	}
}

func testACMEDeactivate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())

	pending, pendingAuthzs := newOrder(a, "a.example.com", "b.example.com")
	mustCreateOrder(t, s, pending, pendingAuthzs)
	if err := s.DeactivateACMEAuthorization(ctx, pendingAuthzs[0].ID); err != nil {
		t.Fatalf("DeactivateACMEAuthorization: %v", err)
	}
	wantStatus(t, s, pending.ID, store.ACMEInvalid, map[string]string{
		pendingAuthzs[0].ID: store.ACMEDeactivated, pendingAuthzs[1].ID: store.ACMEPending,
	})
	if err := s.DeactivateACMEAuthorization(ctx, pendingAuthzs[0].ID); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("second DeactivateACMEAuthorization = %v, want ErrStateChanged", err)
	}
	if err := s.DeactivateACMEAuthorization(ctx, "authz-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeactivateACMEAuthorization(missing) = %v, want ErrNotFound", err)
	}

	// A valid authorization of a ready order: the order can no longer be
	// finalized.
	ready, readyAuthzs := newOrder(a, "c.example.com")
	mustCreateOrder(t, s, ready, readyAuthzs)
	startAll(t, s, readyAuthzs)
	if err := finish(t, s, readyAuthzs[0], true, nil); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, s, ready.ID, store.ACMEReady, nil)
	if err := s.DeactivateACMEAuthorization(ctx, readyAuthzs[0].ID); err != nil {
		t.Fatalf("DeactivateACMEAuthorization of a valid authorization: %v", err)
	}
	wantStatus(t, s, ready.ID, store.ACMEInvalid, map[string]string{readyAuthzs[0].ID: store.ACMEDeactivated})
	wantResults(t, commit(t, s, finalizing(ready.ID)), store.ErrStateChanged)

	// A processing challenge of a deactivated authorization cannot finish.
	processing, processingAuthzs := newOrder(a, "d.example.com")
	mustCreateOrder(t, s, processing, processingAuthzs)
	startAll(t, s, processingAuthzs)
	if err := s.DeactivateACMEAuthorization(ctx, processingAuthzs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := finish(t, s, processingAuthzs[0], true, nil); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("finishing a challenge of a deactivated authorization = %v, want ErrStateChanged", err)
	}
	wantStatus(t, s, processing.ID, store.ACMEInvalid, map[string]string{processingAuthzs[0].ID: store.ACMEDeactivated})
}

func testACMEReplaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	const certID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
	first, firstAuthzs := newOrder(a, "a.example.com")
	first.Replaces = certID
	mustCreateOrder(t, s, first, firstAuthzs)

	second, secondAuthzs := newOrder(a, "a.example.com")
	second.Replaces = certID
	if err := s.CreateACMEOrder(ctx, second, secondAuthzs); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second order replacing %s = %v, want ErrConflict", certID, err)
	}
	if _, err := s.GetACMEAuthorization(ctx, secondAuthzs[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("authorization of the refused order was created: %v", err)
	}
	// Orders that replace nothing, or something else, do not conflict.
	for _, replaces := range []string{"", "", "other.cert"} {
		o, authzs := newOrder(a, "a.example.com")
		o.Replaces = replaces
		mustCreateOrder(t, s, o, authzs)
	}
	// Once the first order has failed, the certificate may be replaced
	// again (RFC 9773, section 5).
	startAll(t, s, firstAuthzs)
	if err := finish(t, s, firstAuthzs[0], false, nil); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, s, first.ID, store.ACMEInvalid, nil)
	mustCreateOrder(t, s, second, secondAuthzs)
}

func testACMEOrderByCertificate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	o, authzs := newOrder(a, "a.example.com")
	mustCreateOrder(t, s, o, authzs)
	other, otherAuthzs := newOrder(a, "b.example.com")
	mustCreateOrder(t, s, other, otherAuthzs)
	if _, err := s.GetACMEOrderByCertificate(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetACMEOrderByCertificate(\"\") with unfinished orders = %v, want ErrNotFound", err)
	}
	startAll(t, s, authzs)
	if err := finish(t, s, authzs[0], true, nil); err != nil {
		t.Fatal(err)
	}
	it := finalizing(o.ID)
	wantResults(t, commit(t, s, it), nil)
	serial := it.Certificate.Serial
	got, err := s.GetACMEOrderByCertificate(ctx, serial)
	if err != nil {
		t.Fatalf("GetACMEOrderByCertificate: %v", err)
	}
	if got.ID != o.ID || got.CertSerial != serial {
		t.Errorf("GetACMEOrderByCertificate returned order %s with serial %s, want %s", got.ID, got.CertSerial, o.ID)
	}
	if _, err := s.GetACMEOrderByCertificate(ctx, newSerial()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetACMEOrderByCertificate(unknown) = %v, want ErrNotFound", err)
	}
}

func testACMEListOrders(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustCreateAccount(t, s, newAccount())
	b := mustCreateAccount(t, s, newAccount())
	// Creation times step back and forth, several orders share each, and
	// ids are random: oldest first means by CreatedAt, then by id.
	type created struct {
		at time.Time
		id string
	}
	var want []created
	for i := range 23 {
		o, authzs := newOrder(a, fmt.Sprintf("host-%d.example.com", i))
		o.CreatedAt = epoch.Add(time.Duration((i*7)%5) * time.Second)
		mustCreateOrder(t, s, o, authzs)
		want = append(want, created{o.CreatedAt, o.ID})
		other, otherAuthzs := newOrder(b, "b.example.com")
		mustCreateOrder(t, s, other, otherAuthzs)
	}
	slices.SortFunc(want, func(x, y created) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		switch {
		case x.id < y.id:
			return -1
		case x.id > y.id:
			return 1
		}
		return 0
	})
	var wantIDs []string
	for _, c := range want {
		wantIDs = append(wantIDs, c.id)
	}
	for _, limit := range []int{1, 5, 23, 100} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("ListACMEOrders never reached the end")
			}
			page, err := s.ListACMEOrders(ctx, a.ID, after, limit)
			if err != nil {
				t.Fatalf("ListACMEOrders: %v", err)
			}
			if len(page) > limit {
				t.Fatalf("page of %d orders, limit %d", len(page), limit)
			}
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1]
		}
		if !slices.Equal(got, wantIDs) {
			t.Errorf("limit %d: listed\n%v\nwant\n%v", limit, got, wantIDs)
		}
	}
	if page, err := s.ListACMEOrders(ctx, a.ID, wantIDs[len(wantIDs)-1], 10); err != nil || len(page) != 0 {
		t.Errorf("page after the last order: %v, %v; want none", page, err)
	}
	if page, err := s.ListACMEOrders(ctx, a.ID, "", 0); err != nil || len(page) != len(wantIDs) {
		t.Errorf("limit 0: %d orders, %v; want all %d", len(page), err, len(wantIDs))
	}
	if page, err := s.ListACMEOrders(ctx, "acct-missing", "", 10); err != nil || len(page) != 0 {
		t.Errorf("orders of an unknown account: %v, %v; want none", page, err)
	}
}

func testACMEEABKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	if keys, err := s.ListACMEEABKeys(ctx, "good-acme"); err != nil || len(keys) != 0 {
		t.Fatalf("ListACMEEABKeys on an empty store = %v, %v", keys, err)
	}
	var want []store.ACMEEABKey
	for _, id := range []string{"kid-m", "kid-Z", "kid-a", "kid-b10", "kid-b2"} {
		k := store.ACMEEABKey{ID: id, Provisioner: "good-acme", Key: []byte("sealed:" + id), CreatedAt: epoch}
		if err := s.CreateACMEEABKey(ctx, k, newEvent(typeACMEEABKey, id)); err != nil {
			t.Fatalf("CreateACMEEABKey: %v", err)
		}
		want = append(want, k)
	}
	other := store.ACMEEABKey{ID: "kid-other", Provisioner: "other-acme", Key: []byte("k"), CreatedAt: epoch}
	if err := s.CreateACMEEABKey(ctx, other, newEvent(typeACMEEABKey, other.ID)); err != nil {
		t.Fatal(err)
	}
	clash := store.ACMEEABKey{ID: "kid-m", Provisioner: "other-acme", Key: []byte("clash")}
	if err := s.CreateACMEEABKey(ctx, clash, newEvent(typeACMEEABKey, clash.ID)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateACMEEABKey with a taken id = %v, want ErrConflict", err)
	}
	if got := head(t, s); got != 6 {
		t.Errorf("audit head %d, want 6 (the refused key appends nothing)", got)
	}

	slices.SortFunc(want, func(x, y store.ACMEEABKey) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	keys, err := s.ListACMEEABKeys(ctx, "good-acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(want) {
		t.Fatalf("ListACMEEABKeys: %d keys, want %d", len(keys), len(want))
	}
	for i, k := range keys {
		checkEABKey(t, k, want[i])
	}

	got, err := s.GetACMEEABKey(ctx, "kid-m")
	if err != nil {
		t.Fatal(err)
	}
	checkEABKey(t, got, want[slices.IndexFunc(want, func(k store.ACMEEABKey) bool { return k.ID == "kid-m" })])
	if _, err := s.GetACMEEABKey(ctx, "kid-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetACMEEABKey(missing) = %v, want ErrNotFound", err)
	}
}

func checkEABKey(t testing.TB, got, want store.ACMEEABKey) {
	t.Helper()
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "BoundAt", got.BoundAt, want.BoundAt)
	got.CreatedAt, got.BoundAt, want.CreatedAt, want.BoundAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("external account key round trip:\n got %+v\nwant %+v", got, want)
	}
}

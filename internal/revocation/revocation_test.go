package revocation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/pgtest"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

// refusals records what Service refuses; the server passes *ca.Authority.
type refusals struct{ errs []*ca.Error }

func (r *refusals) Refuse(_ context.Context, err *ca.Error, _, _ string, _ map[string]string) error {
	r.errs = append(r.errs, err)
	return err
}

// stores returns the SQLite store in a temp dir, and PostgreSQL when
// MESHPKI_TEST_POSTGRES_URL is set.
func stores(t *testing.T) map[string]*sqlstore.Store {
	t.Helper()
	out := map[string]*sqlstore.Store{}
	open := func(name, url string) {
		s, err := sqlstore.Open(context.Background(), url, t.TempDir())
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		out[name] = s
	}
	open("sqlite", "")
	if os.Getenv("MESHPKI_TEST_POSTGRES_URL") != "" {
		open("postgres", pgtest.URL(t)) // a schema of the test's own
	}
	return out
}

func record(t *testing.T, st *sqlstore.Store, serial, renewedFrom string, now time.Time) {
	t.Helper()
	c := store.Certificate{Serial: store.Serial(serial), Subject: "svc", Names: []string{"svc.example.internal"}, Provisioner: "web", Issuer: "default",
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), DER: []byte{0x30, 0x00}, Status: store.StatusValid, RenewedFrom: store.Serial(renewedFrom), CreatedAt: now}
	results, err := st.CommitIssuances(context.Background(), []store.Issuance{{Certificate: &c}})
	if err != nil || results[0] != nil {
		t.Fatalf("record %s: %v %v", serial, err, results)
	}
}

func TestRevoke(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			// Serials unique per run, as PostgreSQL's database is shared.
			base := strings.ReplaceAll(now.Format("150405.000000000"), ".", "")
			a, b, c := "a1"+base, "b2"+base, "c3"+base
			record(t, st, a, "", now)
			record(t, st, b, a, now)
			record(t, st, c, b, now)
			ref := &refusals{}
			svc := New(st, ref, func() time.Time { return now })

			// Superseded revokes only the one certificate.
			rec, renewals, err := svc.Revoke(ctx, Request{Serial: c, Reason: Superseded, Actor: "admin:test"})
			if err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != int(Superseded) || len(renewals) != 0 {
				t.Fatalf("revoke c: %+v %v %v", rec, renewals, err)
			}
			// keyCompromise takes the renewals along; the one already
			// revoked keeps its reason.
			rec, renewals, err = svc.Revoke(ctx, Request{Serial: strings.ToUpper(a), Reason: KeyCompromise, Actor: "admin:test"})
			if err != nil || rec.RevocationReason != int(KeyCompromise) || fmt.Sprint(renewals) != "["+b+"]" {
				t.Fatalf("revoke a: %+v %v %v", rec, renewals, err)
			}
			if got, _ := st.GetCertificate(ctx, store.Serial(c)); got.RevocationReason != int(Superseded) {
				t.Errorf("c's reason changed to %d", got.RevocationReason)
			}
			events, err := st.ListAudit(ctx, 0, 10000)
			if err != nil {
				t.Fatal(err)
			}
			var revokedB bool
			for _, ev := range events {
				if ev.Type == audit.TypeCertificateRevoked && ev.Subject == b {
					revokedB = ev.Detail["renewed_from_revoked"] == a && ev.Detail["reason"] == "keyCompromise" && ev.Actor == "admin:test"
				}
			}
			if !revokedB {
				t.Error("no audit record of the renewal revoked with a")
			}

			for _, tc := range []struct {
				req     Request
				kind    ca.Kind
				refused bool
			}{
				{Request{Serial: "zz"}, ca.KindBadRequest, false},
				{Request{Serial: a, Reason: RemoveFromCRL}, ca.KindBadRequest, false},
				{Request{Serial: a, Reason: 7}, ca.KindBadRequest, false},
				{Request{Serial: "ff" + base}, ca.KindNotFound, true},
				{Request{Serial: a}, ca.KindConflict, true},
			} {
				before := len(ref.errs)
				_, _, err := svc.Revoke(ctx, tc.req)
				var ce *ca.Error
				if !errors.As(err, &ce) || ce.Kind != tc.kind {
					t.Errorf("Revoke(%+v) = %v, want kind %s", tc.req, err, tc.kind)
				}
				if refused := len(ref.errs) > before; refused != tc.refused {
					t.Errorf("Revoke(%+v): audited as a refusal %t, want %t", tc.req, refused, tc.refused)
				}
			}
		})
	}
}

func TestReasons(t *testing.T) {
	for _, r := range Accepted {
		got, err := ParseReason(strings.ToUpper(r.String()))
		if err != nil || got != r {
			t.Errorf("ParseReason(%q) = %v, %v", r, got, err)
		}
	}
	if r, err := ParseReason(""); err != nil || r != Unspecified {
		t.Errorf(`ParseReason("") = %v, %v`, r, err)
	}
	_, err := ParseReason("removeFromCRL")
	if ca.KindOf(err) != ca.KindBadRequest || !strings.Contains(err.Error(), "use unspecified, keyCompromise") {
		t.Errorf("ParseReason(removeFromCRL) = %v", err)
	}
	_, err = ParseReason(strings.Repeat("x", 5000))
	if err == nil || !strings.Contains(err.Error(), "…(5000 bytes)") {
		t.Errorf("a long reason is not clipped: %.100s", err)
	}
	if Reason(7).String() != "reason-7" || KeyCompromise.String() != "keyCompromise" {
		t.Error("String")
	}
	for _, r := range Subscriber {
		if !slices.Contains(Accepted, r) {
			t.Errorf("subscriber reason %s is not accepted", r)
		}
	}
}

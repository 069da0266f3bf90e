package certlint

import (
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmap/zlint/v3/lint"
)

// leaf returns a DER server leaf with dnsNames from a fresh test CA.
func leaf(t testing.TB, dnsNames ...string) []byte {
	t.Helper()
	p := shapeProfiles["server"]
	p.cn, p.dns = "", dnsNames
	return newTestCA(t).sign(t, p, ecKey(t, elliptic.P256()), time.Now())
}

func TestCheck(t *testing.T) {
	l := Default()
	if err := l.Check(leaf(t, "api.example.internal")); err != nil {
		t.Fatalf("clean leaf: %v", err)
	}
	err := l.Check(leaf(t, "under_score.example.internal", "x.-bad.internal"))
	var le *Error
	if !errors.As(err, &le) {
		t.Fatalf("Check = %v, want *Error", err)
	}
	for i := 1; i < len(le.Findings); i++ {
		if le.Findings[i-1].Lint > le.Findings[i].Lint {
			t.Errorf("findings not sorted: %q before %q", le.Findings[i-1].Lint, le.Findings[i].Lint)
		}
	}
	for _, f := range le.Findings {
		if f.Status < Refuse || f.Source == "" {
			t.Errorf("finding %+v: below Refuse or without a source", f)
		}
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "the certificate would fail lint "+le.Findings[0].Lint+" (") || !strings.Contains(msg, "more)") {
		t.Errorf("message %q does not name the first lint and the count of the rest", msg)
	}
	if err := l.Check([]byte("not a certificate")); err == nil || errors.As(err, &le) {
		t.Errorf("Check(junk) = %v, want a parse error", err)
	}
}

func TestNewRefusesNoLints(t *testing.T) {
	if _, err := New(lint.SourceList{"no-such-source"}); err == nil {
		t.Fatal("New with an unknown source succeeded")
	}
}

// BenchmarkCheck is what lint-before-sign adds to every issuance besides
// the throwaway signature.
func BenchmarkCheck(b *testing.B) {
	der := leaf(b, "api.example.internal", "api.prod.svc.cluster.local")
	l := Default()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Check(der); err != nil {
			b.Fatal(err)
		}
	}
}

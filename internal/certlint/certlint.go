// Package certlint owns the check every certificate passes before the CA
// signs it for real: zlint's RFC and community lints, run on a copy of the
// certificate signed with a throwaway key (see package ca, "lint before
// sign"). It decides which lint sources apply and which results refuse a
// certificate; docs/LINTS.md records both.
package certlint

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	zx509 "github.com/zmap/zcrypto/x509"
	_ "github.com/zmap/zlint/v3" // registers the lints
	"github.com/zmap/zlint/v3/lint"
)

// Sources are the lint sources every certificate must pass: the RFCs and the
// community lints. The CA/Browser Forum and root-program sources govern
// publicly trusted CAs and are not applied (docs/LINTS.md says why).
var Sources = lint.SourceList{
	lint.RFC3279, lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.RFC6960, lint.RFC6962, lint.RFC8813,
	lint.Community,
}

// Excluded are lints of Sources that are not run, each for a reason that
// holds for every certificate this CA signs.
var Excluded = map[string]string{
	// It verifies the certificate's signature against eight compromised
	// eMudhra intermediate keys (eight P-384 verifications, over 90% of
	// all lint time). Linting happens before the real signature, on a copy
	// signed with a throwaway key, so it would only ever check that key;
	// and who signs is decided by the CA's own hierarchy, not by a request.
	"e_cert_issued_by_compromised_emudhra_ca": "checks the signer's key, which is the throwaway key when linting before signing",
}

// Refuse is the least severe result that refuses a certificate. Notices are
// informational (for instance that a name is not under a public suffix, as
// private mesh names never are) and do not.
const Refuse = lint.Warn

// Finding is one lint result at or above Refuse.
type Finding struct {
	Lint     string // zlint's name, e.g. "e_rfc_dnsname_underscore_in_sld"
	Status   lint.LintStatus
	Details  string
	Source   lint.LintSource
	Citation string
}

// Error refuses a certificate. Findings are sorted by lint name; the first
// is the one the message names.
type Error struct {
	Findings []Finding
}

func (e *Error) Error() string {
	f := e.Findings[0]
	var b strings.Builder
	cite := f.Citation
	if cite == "" {
		cite = string(f.Source)
	}
	fmt.Fprintf(&b, "the certificate would fail lint %s (%s)", f.Lint, cite)
	if f.Details != "" {
		fmt.Fprintf(&b, ": %s", f.Details)
	}
	if n := len(e.Findings) - 1; n > 0 {
		fmt.Fprintf(&b, " (and %d more)", n)
	}
	return b.String()
}

// Linter runs the lints of a fixed set of sources. It is safe for
// concurrent use.
type Linter struct {
	reg   lint.Registry
	lints []*lint.CertificateLint // reg's, in name order
	cfg   lint.Configuration
	seen  shapeCache

	full, reused, refused atomic.Uint64
}

// Counts returns how many leaves CheckLeaf linted in full, how many passed
// on the verdict of an earlier leaf of the same shape, and how many it
// refused (the server exports them as meshpki_lint_checks_total).
func (l *Linter) Counts() (full, reused, refused uint64) {
	return l.full.Load(), l.reused.Load(), l.refused.Load()
}

// New returns a Linter for sources.
func New(sources lint.SourceList) (*Linter, error) {
	exclude := make([]string, 0, len(Excluded))
	for name := range Excluded {
		exclude = append(exclude, name)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: sources, ExcludeNames: exclude})
	if err != nil {
		return nil, fmt.Errorf("certlint: %w", err)
	}
	if len(reg.Names()) == 0 {
		return nil, fmt.Errorf("certlint: no lints in sources %v", sources)
	}
	return &Linter{reg: reg, lints: reg.CertificateLints().Lints(), cfg: reg.GetConfiguration()}, nil
}

// Default returns the Linter for Sources, built once.
var Default = sync.OnceValue(func() *Linter {
	l, err := New(Sources)
	if err != nil {
		// The sources are constants of this package; a zlint without
		// them is a build that must not sign anything.
		panic(err)
	}
	return l
})

// Registry returns the lints the Linter runs.
func (l *Linter) Registry() lint.Registry { return l.reg }

// Run lints the DER certificate der and returns every result of status min
// or worse, sorted by lint name.
func (l *Linter) Run(der []byte, min lint.LintStatus) ([]Finding, error) {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certlint: zcrypto cannot parse the certificate: %w", err)
	}
	// What zlint.LintCertificateEx does, without building a map of every
	// result and sorting the registry's names on each call.
	var out []Finding
	for _, lt := range l.lints {
		res := lt.Execute(c, l.cfg)
		if res.Status < min {
			continue
		}
		out = append(out, Finding{Lint: lt.Name, Status: res.Status, Details: res.Details, Source: lt.Source, Citation: lt.Citation})
	}
	slices.SortFunc(out, func(a, b Finding) int { return strings.Compare(a.Lint, b.Lint) })
	return out, nil
}

// CheckLeaf is lint before sign for a leaf whose DER TBSCertificate is tbs:
// it returns nil when a leaf of the same shape (see shape.go) passed
// earlier, and otherwise lints the certificate lintCopy returns — tbs signed
// with a throwaway key — in full, as Check does, remembering the shape if it
// passes.
func (l *Linter) CheckLeaf(tbs []byte, lintCopy func() ([]byte, error)) error {
	shape, ok := leafShape(tbs)
	if ok && l.seen.has(shape) {
		l.reused.Add(1)
		return nil
	}
	der, err := lintCopy()
	if err != nil {
		return fmt.Errorf("certlint: make the lint copy: %w", err)
	}
	l.full.Add(1)
	if err := l.Check(der); err != nil {
		l.refused.Add(1)
		return err
	}
	if ok {
		l.seen.add(shape)
	}
	return nil
}

// Check returns an *Error when der has a result at or above Refuse, or an
// error when it cannot be parsed at all.
func (l *Linter) Check(der []byte) error {
	findings, err := l.Run(der, Refuse)
	if err != nil {
		return err
	}
	if len(findings) > 0 {
		return &Error{Findings: findings}
	}
	return nil
}

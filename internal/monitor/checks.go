package monitor

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zmap/zlint/v3/lint"

	"github.com/meshpki/meshpki/internal/certlint"
	"github.com/meshpki/meshpki/internal/duration"
)

// Check ids. They are an interface: alert rules and scripts name them.
const (
	CheckExpired         = "expired"
	CheckNotYetValid     = "not_yet_valid"
	CheckExpiresSoon     = "expires_soon"
	CheckRenewalOverdue  = "renewal_overdue"
	CheckUntrustedChain  = "untrusted_chain"
	CheckIncompleteChain = "incomplete_chain"
	CheckHostname        = "hostname_mismatch"
	CheckWeakKey         = "weak_key"
	CheckWeakSignature   = "weak_signature"
	CheckSelfSigned      = "self_signed"
	CheckRevoked         = "revoked"
	CheckLint            = "lint"
)

// Checks lists every check id.
var Checks = []string{CheckExpired, CheckNotYetValid, CheckExpiresSoon, CheckRenewalOverdue, CheckUntrustedChain,
	CheckIncompleteChain, CheckHostname, CheckWeakKey, CheckWeakSignature, CheckSelfSigned, CheckRevoked, CheckLint}

// TimeBound reports whether check's findings move with time alone: the
// inventory keeps the others as a scan found them and works these out
// whenever it is read.
func TimeBound(check string) bool {
	switch check {
	case CheckExpired, CheckNotYetValid, CheckExpiresSoon, CheckRenewalOverdue:
		return true
	}
	return false
}

// Severity orders findings: Info < Warning < Error < Critical.
type Severity int

const (
	Info Severity = iota + 1
	Warning
	Error
	Critical
)

var severityNames = []string{Info: "info", Warning: "warning", Error: "error", Critical: "critical"}

func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity reads "info", "warning", "error" or "critical".
func ParseSeverity(name string) (Severity, error) {
	if i := slices.Index(severityNames, strings.ToLower(strings.TrimSpace(name))); i > 0 {
		return Severity(i), nil
	}
	return 0, fmt.Errorf("severity %q: use info, warning, error or critical", clip(name))
}

// Finding is one problem a check found.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Certificate is the index in the chain of the certificate the finding
	// is about: 0 is the leaf.
	Certificate int `json:"certificate"`
	// Threshold is the expires_soon threshold crossed (0 for other checks):
	// an alert fires once per threshold.
	Threshold time.Duration `json:"-"`
}

// DefaultWarn are the expires_soon thresholds when none are given.
var DefaultWarn = []time.Duration{30 * 24 * time.Hour, 14 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}

// ParseThresholds reads a comma-separated list of durations ("30d,14d,7d,1d").
func ParseThresholds(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := duration.Parse(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("threshold %q: %w", clip(part), err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("threshold %q must be positive", clip(part))
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Policy is what the checks compare a chain with.
type Policy struct {
	// Warn are the expires_soon thresholds (default DefaultWarn).
	Warn []time.Duration
	// Roots are the trusted roots (nil: the system's).
	Roots *x509.CertPool
	// Lint runs zlint on leaves (the lint check).
	Lint bool
	// Now is the time checked at (default time.Now).
	Now func() time.Time
	// Revocation, if set, asks each leaf's OCSP responder or CRL whether
	// it was revoked (the revoked check for certificates of other CAs).
	Revocation *Revocation

	lintCache sync.Map // fingerprint → []string, zlint errors
}

// Source says where a chain came from, for the checks that depend on it.
type Source struct {
	// Endpoint is set for a chain a TLS server presented; VerifyName is the
	// name its leaf must be valid for.
	Endpoint   bool
	VerifyName string
}

// Check runs every check on chain, whose first certificate is the leaf,
// and returns the findings, worst first, then by check id and certificate.
func (p *Policy) Check(chain []*x509.Certificate, src Source) []Finding {
	if len(chain) == 0 {
		return nil
	}
	now := p.now()
	out := p.Timely(chain)
	for i, cert := range chain {
		out = append(out, weakness(i, cert)...)
	}
	out = append(out, p.trust(chain, src, now)...)
	if p.Lint {
		out = append(out, p.lint(chain[0])...)
	}
	if p.Revocation != nil && len(chain) > 1 && chain[0].CheckSignatureFrom(chain[1]) == nil {
		out = append(out, p.Revocation.check(chain[0], chain[1], now)...)
	}
	SortFindings(out)
	return out
}

// Timely runs the time-bound checks alone (see TimeBound), unsorted.
func (p *Policy) Timely(chain []*x509.Certificate) []Finding {
	now := p.now()
	warn := p.Warn
	if len(warn) == 0 {
		warn = DefaultWarn
	}
	var out []Finding
	for i, cert := range chain {
		out = append(out, validity(i, cert, now, warn)...)
	}
	return out
}

func (p *Policy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// SortFindings orders findings worst first, then by check id and
// certificate.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if a.Severity != b.Severity {
			return int(b.Severity - a.Severity)
		}
		if c := strings.Compare(a.Check, b.Check); c != 0 {
			return c
		}
		return a.Certificate - b.Certificate
	})
}

// Worst is the highest severity among findings (0 when none).
func Worst(fs []Finding) Severity {
	var w Severity
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// role names certificate i of a chain in messages.
func role(i int, cert *x509.Certificate) string {
	if i == 0 {
		return "the certificate"
	}
	return fmt.Sprintf("chain certificate %d (%s)", i, clip(cert.Subject.String()))
}

// validity is the expiry checks of one certificate. A threshold applies to
// a certificate only when it is at most a third of its lifetime: a 24h
// certificate is always within 1d of its end, and warning about it would
// be noise. A certificate no threshold applies to (short-lived) gets
// renewal_overdue instead once two thirds of its lifetime have passed.
func validity(i int, cert *x509.Certificate, now time.Time, warn []time.Duration) []Finding {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return []Finding{{Check: CheckExpired, Severity: Critical, Certificate: i,
			Message: fmt.Sprintf("%s expired %s ago (%s)", role(i, cert), duration.Format(-left), cert.NotAfter.UTC().Format(time.RFC3339))}}
	case now.Before(cert.NotBefore):
		return []Finding{{Check: CheckNotYetValid, Severity: Critical, Certificate: i,
			Message: fmt.Sprintf("%s is not valid until %s (in %s)", role(i, cert), cert.NotBefore.UTC().Format(time.RFC3339), duration.Format(cert.NotBefore.Sub(now)))}}
	}
	sorted := slices.Clone(warn)
	slices.Sort(sorted) // smallest first
	applies := false
	for rank, th := range sorted {
		if 3*th > lifetime {
			continue
		}
		applies = true
		if left > th {
			continue
		}
		// The smallest threshold is critical, the next error, the rest
		// warnings.
		sev := Warning
		switch rank {
		case 0:
			sev = Critical
		case 1:
			sev = Error
		}
		return []Finding{{Check: CheckExpiresSoon, Severity: sev, Certificate: i, Threshold: th,
			Message: fmt.Sprintf("%s expires in %s (threshold %s)", role(i, cert), duration.Format(left), duration.Format(th))}}
	}
	if !applies && lifetime > 0 && now.Sub(cert.NotBefore) > lifetime*2/3 {
		return []Finding{{Check: CheckRenewalOverdue, Severity: Error, Certificate: i,
			Message: fmt.Sprintf("%s is past two thirds of its %s lifetime and has not been replaced: it expires in %s", role(i, cert), duration.Format(lifetime), duration.Format(left))}}
	}
	return nil
}

// weakness is weak_key and weak_signature for one certificate. A
// self-signed certificate's own signature protects nothing, so it is not
// judged.
func weakness(i int, cert *x509.Certificate) []Finding {
	var out []Finding
	weak := ""
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			weak = "is below 2048 bits"
		}
	case *ecdsa.PublicKey:
		if pub.Curve.Params().BitSize < 256 {
			weak = "is below 256 bits"
		}
	}
	if cert.PublicKeyAlgorithm == x509.DSA {
		weak = "is DSA, which no current client accepts"
	}
	if weak != "" {
		out = append(out, Finding{Check: CheckWeakKey, Severity: Error, Certificate: i,
			Message: fmt.Sprintf("the key of %s (%s) %s", role(i, cert), keyDescription(cert), weak)})
	}
	if weakSignature(cert) {
		out = append(out, Finding{Check: CheckWeakSignature, Severity: Error, Certificate: i,
			Message: fmt.Sprintf("%s is signed with %s, which clients reject", role(i, cert), cert.SignatureAlgorithm)})
	}
	return out
}

// weakSignature reports whether cert, not self-signed, is signed with MD2,
// MD5 or SHA-1.
func weakSignature(cert *x509.Certificate) bool {
	if selfIssued(cert) {
		return false
	}
	switch cert.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}

// trust is self_signed, untrusted_chain, incomplete_chain and
// hostname_mismatch. Each problem is reported once, by the check that
// names its cause: a self-signed leaf is not also untrusted, a chain with
// a weak signature (which Go refuses to verify) or an expired certificate
// is judged by those checks.
func (p *Policy) trust(chain []*x509.Certificate, src Source, now time.Time) []Finding {
	leaf := chain[0]
	var out []Finding
	if src.Endpoint && src.VerifyName != "" {
		if err := leaf.VerifyHostname(src.VerifyName); err != nil {
			out = append(out, Finding{Check: CheckHostname, Severity: Error,
				Message: fmt.Sprintf("the certificate is not valid for %s: its names are %s", clip(src.VerifyName), clip(strings.Join(Names(leaf), ", ")))})
		}
	}
	if selfIssued(leaf) && (src.Endpoint || !leaf.IsCA) {
		if !p.trusted(leaf) {
			out = append(out, Finding{Check: CheckSelfSigned, Severity: Error,
				Message: "the certificate is self-signed and not among the trusted roots"})
		}
		return out
	}
	for _, c := range chain {
		if weakSignature(c) {
			return out // Go will not verify it; weak_signature says why
		}
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: p.Roots, Intermediates: intermediates,
		CurrentTime: within(chain, now),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	last := chain[len(chain)-1]
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		// Dates: the expiry checks report them.
	case selfIssued(leaf) && leaf.IsCA && len(chain) == 1:
		// A CA certificate in a file: a root, trusted or not by choice.
	case errors.As(err, &unknown) && !selfIssued(last) && !p.issuedByRoot(last):
		out = append(out, Finding{Check: CheckIncompleteChain, Severity: Error,
			Message: fmt.Sprintf("the chain stops at %s, whose issuer %s was not presented and is not a trusted root",
				clip(last.Subject.String()), clip(last.Issuer.String()))})
	default:
		out = append(out, Finding{Check: CheckUntrustedChain, Severity: Error,
			Message: "the chain does not verify against the trusted roots: " + clip(err.Error())})
	}
	return out
}

// issuedByRoot reports whether cert was issued by one of the trusted roots.
func (p *Policy) issuedByRoot(cert *x509.Certificate) bool {
	_, err := cert.Verify(x509.VerifyOptions{Roots: p.Roots, CurrentTime: midlife(cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// midlife is the middle of cert's validity.
func midlife(cert *x509.Certificate) time.Time {
	return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
}

// trusted reports whether cert is itself one of the trusted roots.
func (p *Policy) trusted(cert *x509.Certificate) bool {
	return p.issuedByRoot(cert)
}

// within is now moved inside every certificate's validity when the chain
// has a common moment, so that verification judges trust and not dates
// (the expiry checks judge those).
func within(chain []*x509.Certificate, now time.Time) time.Time {
	from, to := chain[0].NotBefore, chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotBefore.After(from) {
			from = c.NotBefore
		}
		if c.NotAfter.Before(to) {
			to = c.NotAfter
		}
	}
	switch {
	case !from.Before(to):
		return now
	case now.Before(from):
		return from
	case !now.Before(to):
		return to.Add(-time.Second)
	}
	return now
}

// lint is zlint's errors on the leaf, remembered by fingerprint.
func (p *Policy) lint(leaf *x509.Certificate) []Finding {
	key := Fingerprint(leaf)
	v, ok := p.lintCache.Load(key)
	if !ok {
		var names []string
		res, err := certlint.Default().Run(leaf.Raw, lint.Error)
		if err != nil {
			names = []string{"(zlint cannot parse it: " + clip(err.Error()) + ")"}
		}
		for _, r := range res {
			names = append(names, r.Lint)
		}
		v, _ = p.lintCache.LoadOrStore(key, names)
	}
	names := v.([]string)
	if len(names) == 0 {
		return nil
	}
	return []Finding{{Check: CheckLint, Severity: Warning,
		Message: "the certificate fails zlint: " + strings.Join(names, ", ")}}
}

package declared

import (
	"crypto/x509"
	"time"
)

// RenewalTime is when leaf is due for renewal: renewBefore before it
// expires, or when renewBefore is 0 at two thirds of its lifetime; less
// jitter(max) with max a twentieth of the lifetime (at most 10 minutes), so
// that a fleet issued together does not renew together; and never sooner
// than a tenth of the lifetime (10 seconds at least) after issued (zero:
// its NotBefore), so that a renewBefore as long as the lifetime cannot make
// renewals back to back. jitter nil means none.
func RenewalTime(leaf *x509.Certificate, renewBefore time.Duration, issued time.Time, jitter func(max time.Duration) time.Duration) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	before := renewBefore
	if before <= 0 {
		before = life / 3
	}
	at := leaf.NotAfter.Add(-before)
	if spread := min(life/20, 10*time.Minute); spread > 0 && jitter != nil {
		at = at.Add(-jitter(spread))
	}
	if issued.IsZero() {
		issued = leaf.NotBefore
	}
	if floor := issued.Add(max(life/10, 10*time.Second)); at.Before(floor) {
		at = floor
	}
	return at
}

// Backoff between failed issuances of one certificate: doubling from
// RetryFirst to RetryMax; a refusal waits RetryMax at once.
const (
	RetryFirst = time.Second
	RetryMax   = 5 * time.Minute
)

// retryDelay is the wait after the n-th failure in a row (n ≥ 1), with up
// to a fifth more from jitter.
func retryDelay(n int, refused bool, jitter func(max time.Duration) time.Duration) time.Duration {
	d := RetryMax
	if !refused && n < 20 {
		d = min(RetryFirst<<(n-1), RetryMax)
	}
	if jitter != nil {
		d += jitter(d / 5)
	}
	return d
}

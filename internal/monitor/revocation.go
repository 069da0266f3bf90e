package monitor

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/meshpki/meshpki/internal/duration"
)

// Revocation asks a certificate's own OCSP responder (its AIA), or else
// its CRL (its CRL distribution point), whether it was revoked. Answers
// are cached until their nextUpdate (at most a day), so a scan of many
// endpoints that share a certificate asks once.
type Revocation struct {
	// Client makes the requests (default: a client with Timeout). The
	// server's carries its network guard.
	Client *http.Client
	// Timeout bounds one request (default 5s).
	Timeout time.Duration

	mu    sync.Mutex
	cache map[string]revocationAnswer // leaf fingerprint, or CRL URL
}

type revocationAnswer struct {
	revoked bool
	at      time.Time
	reason  int
	until   time.Time
	crl     *x509.RevocationList // for CRL URLs
	source  string
}

// maxCRLBytes bounds a CRL download.
const maxCRLBytes = 32 << 20

func (r *Revocation) client() *http.Client {
	if r.Client != nil {
		return r.Client
	}
	t := r.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return &http.Client{Timeout: t}
}

func (r *Revocation) cached(key string, now time.Time) (revocationAnswer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.cache[key]
	if !ok || now.After(a.until) {
		return revocationAnswer{}, false
	}
	return a, true
}

func (r *Revocation) store(key string, a revocationAnswer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[string]revocationAnswer{}
	}
	r.cache[key] = a
}

// check returns the revoked finding for leaf (issued by issuer), nil when
// it is not revoked or says nowhere how to ask, or an info finding when
// asking failed.
func (r *Revocation) check(leaf, issuer *x509.Certificate, now time.Time) []Finding {
	if len(leaf.OCSPServer) == 0 && len(leaf.CRLDistributionPoints) == 0 {
		return nil
	}
	key := Fingerprint256(leaf)
	a, ok := r.cached(key, now)
	if !ok {
		var err error
		a, err = r.ask(leaf, issuer, now)
		if err != nil {
			return []Finding{{Check: CheckRevoked, Severity: Info,
				Message: "the revocation status could not be checked: " + clip(err.Error())}}
		}
		r.store(key, a)
	}
	if !a.revoked {
		return nil
	}
	return []Finding{{Check: CheckRevoked, Severity: Critical,
		Message: fmt.Sprintf("the certificate was revoked %s ago (%s), says %s", duration.Format(now.Sub(a.at)), reasonName(a.reason), clip(a.source))}}
}

// ask tries OCSP, then the CRL.
func (r *Revocation) ask(leaf, issuer *x509.Certificate, now time.Time) (revocationAnswer, error) {
	var errs []error
	for _, u := range leaf.OCSPServer {
		a, err := r.askOCSP(u, leaf, issuer, now)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("OCSP %s: %w", u, err))
	}
	for _, u := range leaf.CRLDistributionPoints {
		a, err := r.askCRL(u, leaf, issuer, now)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("CRL %s: %w", u, err))
	}
	return revocationAnswer{}, errors.Join(errs...)
}

func (r *Revocation) askOCSP(u string, leaf, issuer *x509.Certificate, now time.Time) (revocationAnswer, error) {
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return revocationAnswer{}, err
	}
	resp, err := r.client().Post(u, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		return revocationAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return revocationAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return revocationAnswer{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	parsed, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return revocationAnswer{}, err
	}
	a := revocationAnswer{source: "its OCSP responder " + u, until: cacheUntil(parsed.NextUpdate, now)}
	switch parsed.Status {
	case ocsp.Revoked:
		a.revoked, a.at, a.reason = true, parsed.RevokedAt, parsed.RevocationReason
	case ocsp.Unknown:
		return revocationAnswer{}, errors.New("the responder does not know the certificate")
	}
	return a, nil
}

func (r *Revocation) askCRL(u string, leaf, issuer *x509.Certificate, now time.Time) (revocationAnswer, error) {
	crlAnswer, ok := r.cached(u, now)
	if !ok {
		resp, err := r.client().Get(u)
		if err != nil {
			return revocationAnswer{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return revocationAnswer{}, fmt.Errorf("HTTP %s", resp.Status)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLBytes+1))
		if err != nil {
			return revocationAnswer{}, err
		}
		if len(body) > maxCRLBytes {
			return revocationAnswer{}, fmt.Errorf("the CRL is over %d bytes", maxCRLBytes)
		}
		crl, err := x509.ParseRevocationList(body)
		if err != nil {
			return revocationAnswer{}, err
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			return revocationAnswer{}, fmt.Errorf("the CRL is not signed by the certificate's issuer: %w", err)
		}
		crlAnswer = revocationAnswer{crl: crl, until: cacheUntil(crl.NextUpdate, now)}
		r.store(u, crlAnswer)
	}
	a := revocationAnswer{source: "its CRL " + u, until: crlAnswer.until}
	for _, e := range crlAnswer.crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			a.revoked, a.at, a.reason = true, e.RevocationTime, e.ReasonCode
			break
		}
	}
	return a, nil
}

// cacheUntil is when an answer with nextUpdate next stops being used: then,
// or in a day, whichever is sooner.
func cacheUntil(next, now time.Time) time.Time {
	if next.IsZero() || next.After(now.Add(24*time.Hour)) {
		return now.Add(24 * time.Hour)
	}
	return next
}

// reasonName names an RFC 5280 CRLReason code.
func reasonName(code int) string {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation",
		"certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}
	if code >= 0 && code < len(names) && names[code] != "" {
		return names[code]
	}
	return fmt.Sprintf("reason %d", code)
}

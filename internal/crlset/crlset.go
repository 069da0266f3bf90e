// Package crlset owns what a relying party holds of revocation: CRLs
// fetched over HTTP from their URLs, refreshed with conditional GETs in the
// background, and checked against a verified chain in memory — never a
// network call on the handshake path. The mTLS proxy and the mtls library
// use it; it imports nothing of the CA.
package crlset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRefresh is how often CRLs are fetched again.
const DefaultRefresh = 30 * time.Second

// maxCRL bounds one CRL download (a million entries take some 47 MB).
const maxCRL = 256 << 20

// Set holds the CRLs at URLs. The zero value with URLs set is ready to
// Run; Check may be called concurrently with Run from any goroutine.
type Set struct {
	URLs    []string
	Client  *http.Client  // default: a client with a 30 s timeout
	Refresh time.Duration // default DefaultRefresh
	Logger  *slog.Logger

	lists    atomic.Pointer[map[string]*list]
	mu       sync.Mutex // serialises Update
	once     sync.Once
	ready    chan struct{}
	isReady  atomic.Bool
	failures atomic.Int64
}

// list is one fetched CRL.
type list struct {
	crl          *x509.RevocationList
	etag, lastMo string
	revoked      map[string]entry // by the serial's big-endian bytes
	// verifiedBy remembers the issuers (by certificate hash) whose
	// signature on this CRL was checked: the CRL applies only to
	// certificates of an issuer that signed it.
	verifiedBy sync.Map // [32]byte → bool
}

type entry struct {
	reason int
	at     time.Time
}

// RevokedError is Check's error for a revoked certificate.
type RevokedError struct {
	Serial  string // hexadecimal
	Subject string
	Reason  int
	At      time.Time
}

func (e *RevokedError) Error() string {
	reason := fmt.Sprintf("reason %d", e.Reason)
	if e.Reason >= 0 && e.Reason < len(ReasonNames) && ReasonNames[e.Reason] != "" {
		reason = ReasonNames[e.Reason]
	}
	return fmt.Sprintf("certificate %s (%s) was revoked at %s: %s", e.Serial, e.Subject, e.At.UTC().Format(time.RFC3339), reason)
}

// ReasonNames are RFC 5280's CRLReason names (section 5.3.1) by code; 7
// is unused.
var ReasonNames = [...]string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
	"cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}

func (s *Set) init() {
	s.once.Do(func() {
		s.ready = make(chan struct{})
		empty := map[string]*list{}
		s.lists.Store(&empty)
	})
}

func (s *Set) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Ready is closed once every URL has been fetched once.
func (s *Set) Ready() <-chan struct{} {
	s.init()
	return s.ready
}

// Run fetches every URL now and then every Refresh until ctx ends. A URL
// that fails keeps its last CRL; the failure is logged.
func (s *Set) Run(ctx context.Context) error {
	s.init()
	every := s.Refresh
	if every <= 0 {
		every = DefaultRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Update(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("crl: refresh", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Update fetches every URL once, conditionally (If-None-Match,
// If-Modified-Since), and replaces the CRLs that changed.
func (s *Set) Update(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.lists.Load()
	next := make(map[string]*list, len(s.URLs))
	var errs []error
	for _, u := range s.URLs {
		l, err := s.fetch(ctx, u, old[u])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			s.failures.Add(1)
			l = old[u]
		}
		if l != nil {
			next[u] = l
		}
	}
	s.lists.Store(&next)
	if len(next) == len(s.URLs) && !s.isReady.Swap(true) {
		close(s.ready)
	}
	return errors.Join(errs...)
}

func (s *Set) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// fetch GETs one CRL (DER or PEM); prev, when set, makes it conditional
// and is returned unchanged on 304.
func (s *Set) fetch(ctx context.Context, url string, prev *list) (*list, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if prev.etag != "" {
			req.Header.Set("If-None-Match", prev.etag)
		}
		if prev.lastMo != "" {
			req.Header.Set("If-Modified-Since", prev.lastMo)
		}
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && prev != nil:
		return prev, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCRL+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxCRL {
		return nil, fmt.Errorf("a CRL over %d bytes", maxCRL)
	}
	if block, _ := pem.Decode(body); block != nil && block.Type == "X509 CRL" {
		body = block.Bytes
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return nil, err
	}
	if prev != nil && prev.crl.Number != nil && crl.Number != nil && crl.Number.Cmp(prev.crl.Number) < 0 &&
		bytes.Equal(crl.RawIssuer, prev.crl.RawIssuer) {
		return nil, fmt.Errorf("CRL number %s is older than the one held (%s)", crl.Number, prev.crl.Number)
	}
	l := &list{crl: crl, etag: resp.Header.Get("ETag"), lastMo: resp.Header.Get("Last-Modified"),
		revoked: make(map[string]entry, len(crl.RevokedCertificateEntries))}
	for _, e := range crl.RevokedCertificateEntries {
		l.revoked[string(e.SerialNumber.Bytes())] = entry{reason: e.ReasonCode, at: e.RevocationTime}
	}
	return l, nil
}

// Check returns a *RevokedError when a certificate of the verified chain
// (leaf first, each certificate followed by its issuer) is on a CRL its
// issuer signed. A CRL is checked against an issuer's signature the first
// time it is needed, then remembered; nothing is fetched.
func (s *Set) Check(chain []*x509.Certificate) error {
	s.init()
	lists := *s.lists.Load()
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		serial := cert.SerialNumber.Bytes()
		for _, l := range lists {
			if !bytes.Equal(l.crl.RawIssuer, issuer.RawSubject) {
				continue
			}
			e, listed := l.revoked[string(serial)]
			if !listed || !l.signedBy(issuer) {
				continue
			}
			return &RevokedError{Serial: cert.SerialNumber.Text(16), Subject: nameOf(cert), Reason: e.reason, At: e.at}
		}
	}
	return nil
}

// nameOf names a certificate for a message: its first URI SAN (a SPIFFE
// ID), else its first DNS name, else its subject.
func nameOf(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

func (l *list) signedBy(issuer *x509.Certificate) bool {
	k := sha256.Sum256(issuer.Raw)
	if v, ok := l.verifiedBy.Load(k); ok {
		return v.(bool)
	}
	ok := l.crl.CheckSignatureFrom(issuer) == nil
	l.verifiedBy.Store(k, ok)
	return ok
}

// Status describes what the set holds, for /readyz and logs.
type Status struct {
	Ready    bool
	Lists    int
	Revoked  int
	Failures int64
	// Stale counts CRLs past their nextUpdate (still enforced).
	Stale int
}

// Status returns what the set holds now.
func (s *Set) Status(now time.Time) Status {
	s.init()
	st := Status{Ready: s.isReady.Load(), Failures: s.failures.Load()}
	for _, l := range *s.lists.Load() {
		st.Lists++
		st.Revoked += len(l.revoked)
		if !l.crl.NextUpdate.IsZero() && now.After(l.crl.NextUpdate) {
			st.Stale++
		}
	}
	return st
}

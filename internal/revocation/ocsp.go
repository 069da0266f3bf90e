package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 6960 CertIDs are SHA-1 by default; it names, it does not secure
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of the OCSP responder.
const (
	// DefaultOCSPValidity is how long a response is good for (nextUpdate -
	// thisUpdate); responses are signed again once half of it has passed.
	DefaultOCSPValidity = 24 * time.Hour
	// DefaultResponderLifetime is the delegated responder certificate's
	// lifetime; it is replaced once a third is left.
	DefaultResponderLifetime = 7 * 24 * time.Hour
	// ocspRecheck bounds how long a cached answer goes without its status
	// being read again from the store: a revocation on another replica
	// shows within it.
	ocspRecheck = time.Second
	// maxOCSPRequest bounds a request body.
	maxOCSPRequest = 10 << 10
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960, section 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// OCSPResponder answers RFC 6960 requests about certificates of the CA's
// intermediates (every loaded generation), signed by a delegated responder
// certificate each generation issues itself (id-kp-OCSPSigning,
// id-pkix-ocsp-nocheck, short-lived, replaced before it runs out).
// Responses are pre-signed and cached; a cached answer's status is read
// again from the store at most every second.
type OCSPResponder struct {
	Hierarchy *ca.Hierarchy
	Store     store.CertificateReader
	// Validity (default DefaultOCSPValidity) and ResponderLifetime
	// (default DefaultResponderLifetime).
	Validity, ResponderLifetime time.Duration
	Clock                       func() time.Time
	Logger                      *slog.Logger

	mu        sync.Mutex
	responder map[string]*responder // issuer generation key → its delegated signer
	cache     sync.Map              // cacheKey → *cachedResponse
	issuers   sync.Map              // issuerKey → *ca.Issuer: CertIDs seen, resolved
}

// issuerKey is a CertID's issuer part.
type issuerKey struct {
	hash            crypto.Hash
	nameHash, keyID string
}

type responder struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type cacheKey struct {
	hash   crypto.Hash
	issuer string // the generation's key
	serial string
}

type cachedResponse struct {
	der        []byte
	by         *responder // who signed der
	status     int
	revokedAt  time.Time
	thisUpdate time.Time
	checked    time.Time
}

func (o *OCSPResponder) now() time.Time {
	if o.Clock != nil {
		return o.Clock()
	}
	return time.Now()
}

func (o *OCSPResponder) validity() time.Duration {
	if o.Validity > 0 {
		return o.Validity
	}
	return DefaultOCSPValidity
}

// issuerOf finds the generation a request names by its CertID hashes.
func (o *OCSPResponder) issuerOf(req *ocsp.Request) (*ca.Issuer, error) {
	if !req.HashAlgorithm.Available() {
		return nil, errors.New("unsupported hash algorithm")
	}
	k := issuerKey{req.HashAlgorithm, string(req.IssuerNameHash), string(req.IssuerKeyHash)}
	if is, ok := o.issuers.Load(k); ok {
		return is.(*ca.Issuer), nil
	}
	is, err := o.findIssuer(req)
	if err == nil {
		o.issuers.Store(k, is) // generations never change; a new one is a new key
	}
	return is, err
}

func (o *OCSPResponder) findIssuer(req *ocsp.Request) (*ca.Issuer, error) {
	for _, is := range o.Hierarchy.Issuers() {
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(is.Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
			continue
		}
		h := req.HashAlgorithm.New()
		h.Write(is.Cert.RawSubject)
		if !bytes.Equal(h.Sum(nil), req.IssuerNameHash) {
			continue
		}
		h.Reset()
		h.Write(spki.PublicKey.RightAlign())
		if bytes.Equal(h.Sum(nil), req.IssuerKeyHash) {
			return is, nil
		}
	}
	return nil, errors.New("no such issuer here")
}

func generationKey(is *ca.Issuer) string { return fmt.Sprintf("%s/%d", is.Name, is.Generation) }

// signer returns the generation's delegated responder, made or replaced
// when needed.
func (o *OCSPResponder) signer(is *ca.Issuer, now time.Time) (*responder, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.responder == nil {
		o.responder = map[string]*responder{}
	}
	k := generationKey(is)
	if r := o.responder[k]; r != nil && r.cert.NotAfter.Sub(now) > o.lifetime()/3 {
		return r, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	noCheck, _ := asn1.Marshal(asn1.NullRawValue)
	notAfter := now.Add(o.lifetime())
	if notAfter.After(is.Cert.NotAfter) {
		notAfter = is.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial.Add(serial, big.NewInt(1)),
		Subject:         pkix.Name{CommonName: fmt.Sprintf("OCSP responder for %s", is.Cert.Subject.CommonName)},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidOCSPNoCheck, Value: noCheck}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.Cert, key.Public(), is.Signer)
	if err != nil {
		return nil, fmt.Errorf("issue the OCSP responder certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	r := &responder{cert: cert, key: key}
	o.responder[k] = r
	return r, nil
}

func (o *OCSPResponder) lifetime() time.Duration {
	if o.ResponderLifetime > 0 {
		return o.ResponderLifetime
	}
	return DefaultResponderLifetime
}

// Respond answers one DER-encoded request with a DER-encoded response. A
// request with a nonce of 1 to 32 octets (RFC 8954) gets it back in the
// responseExtensions of a response signed for it; the cached response is
// otherwise shared.
func (o *OCSPResponder) Respond(ctx context.Context, raw []byte) []byte {
	req, err := ocsp.ParseRequest(raw)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse
	}
	der, by := o.respond(ctx, req)
	if nonce := requestNonce(raw); nonce != nil && by != nil {
		withNonce, err := addNonce(der, nonce, by.key)
		if err != nil {
			o.log().Error("ocsp: nonce", "error", err)
			return ocsp.InternalErrorErrorResponse
		}
		return withNonce
	}
	return der
}

// respond returns the (cached) response to req and the responder that
// signed it (nil for an error response).
func (o *OCSPResponder) respond(ctx context.Context, req *ocsp.Request) ([]byte, *responder) {
	is, err := o.issuerOf(req)
	if err != nil {
		return ocsp.UnauthorizedErrorResponse, nil
	}
	now := o.now()
	key := cacheKey{hash: req.HashAlgorithm, issuer: generationKey(is), serial: req.SerialNumber.Text(16)}
	if v, ok := o.cache.Load(key); ok {
		c := v.(*cachedResponse)
		if now.Sub(c.checked) < ocspRecheck && now.Sub(c.thisUpdate) < o.validity()/2 {
			return c.der, c.by
		}
	}
	status, revokedAt, reason, err := o.status(ctx, is, req.SerialNumber)
	if err != nil {
		o.log().Error("ocsp: status", "error", err)
		return ocsp.TryLaterErrorResponse, nil
	}
	if v, ok := o.cache.Load(key); ok {
		c := v.(*cachedResponse)
		if c.status == status && c.revokedAt.Equal(revokedAt) && now.Sub(c.thisUpdate) < o.validity()/2 {
			fresh := *c
			fresh.checked = now
			o.cache.Store(key, &fresh)
			return c.der, c.by
		}
	}
	r, err := o.signer(is, now)
	if err != nil {
		o.log().Error("ocsp: responder", "error", err)
		return ocsp.InternalErrorErrorResponse, nil
	}
	thisUpdate := now.Truncate(time.Minute)
	der, err := ocsp.CreateResponse(is.Cert, r.cert, ocsp.Response{
		Status: status, SerialNumber: req.SerialNumber, IssuerHash: req.HashAlgorithm,
		ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(o.validity()),
		RevokedAt: revokedAt, RevocationReason: reason, Certificate: r.cert,
	}, r.key)
	if err != nil {
		o.log().Error("ocsp: sign", "error", err)
		return ocsp.InternalErrorErrorResponse, nil
	}
	o.cache.Store(key, &cachedResponse{der: der, by: r, status: status, revokedAt: revokedAt, thisUpdate: thisUpdate, checked: now})
	return der, r
}

// status is what the store says of serial, for the generation is: good,
// revoked (with time and reason), or unknown when this CA did not issue it
// from that generation.
func (o *OCSPResponder) status(ctx context.Context, is *ca.Issuer, serial *big.Int) (int, time.Time, int, error) {
	c, err := o.Store.GetCertificate(ctx, store.SerialOf(serial))
	if errors.Is(err, store.ErrNotFound) {
		return ocsp.Unknown, time.Time{}, 0, nil
	}
	if err != nil {
		return 0, time.Time{}, 0, err
	}
	// The store records the generation; records it could not place
	// (-1) are checked against the issuer's name in the DER.
	if c.Issuer != is.Name || c.IssuerGeneration != is.Generation && (c.IssuerGeneration > 0 || !issuedBy(c.DER, is.Cert)) {
		return ocsp.Unknown, time.Time{}, 0, nil
	}
	if c.Status == store.StatusRevoked {
		return ocsp.Revoked, c.RevokedAt, c.RevocationReason, nil
	}
	return ocsp.Good, time.Time{}, 0, nil
}

// issuedBy reports whether the certificate der names issuer's subject as
// its issuer.
func issuedBy(der []byte, issuer *x509.Certificate) bool {
	c, err := x509.ParseCertificate(der)
	return err == nil && bytes.Equal(c.RawIssuer, issuer.RawSubject)
}

// Forget drops cached answers about serial, after a revocation here.
func (o *OCSPResponder) Forget(serial store.Serial) {
	o.cache.Range(func(k, _ any) bool {
		if k.(cacheKey).serial == string(serial) {
			o.cache.Delete(k)
		}
		return true
	})
}

func (o *OCSPResponder) log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// ServeHTTP answers POST /ocsp (application/ocsp-request) and
// GET /ocsp/{base64 request} (RFC 6960, appendix A).
func (o *OCSPResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var raw []byte
	switch r.Method {
	case http.MethodPost:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
		if err != nil {
			raw = nil
		} else {
			raw = b
		}
	case http.MethodGet, http.MethodHead:
		enc := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp")
		enc = strings.TrimPrefix(enc, "/")
		if unescaped, err := url.PathUnescape(enc); err == nil {
			enc = unescaped
		}
		for _, dec := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
			if b, err := dec.DecodeString(enc); err == nil {
				raw = b
				break
			}
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "OCSP takes GET or POST", http.StatusMethodNotAllowed)
		return
	}
	resp := ocsp.MalformedRequestErrorResponse
	if raw != nil {
		resp = o.Respond(r.Context(), raw)
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	if r.Method != http.MethodPost {
		sum := sha256.Sum256(resp)
		w.Header().Set("ETag", fmt.Sprintf("%q", base64.RawURLEncoding.EncodeToString(sum[:16])))
		w.Header().Set("Cache-Control", "max-age=60, public, no-transform, must-revalidate")
	}
	_, _ = w.Write(resp)
}

// SHA-1 is linked in for CertIDs (openssl asks with it by default).
var _ = sha1.New

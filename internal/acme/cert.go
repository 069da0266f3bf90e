package acme

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

// handleCertificate sends the certificate of a valid order with its chain
// (RFC 8555, section 7.4.2) as application/pem-certificate-chain.
func (s *Server) handleCertificate(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	if !req.postAsGet {
		return malformed("download a certificate with POST-as-GET (an empty payload)")
	}
	serial, err := ca.ParseSerial(r.PathValue("serial"))
	if err != nil {
		return notFound("no certificate %s", ca.Clip(r.PathValue("serial")))
	}
	o, err := s.st.GetACMEOrderByCertificate(r.Context(), serial)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no certificate %s", serial)
	}
	if err != nil {
		return storeProblem(err)
	}
	if o.AccountID != req.account.ID {
		return unauthorized("certificate %s was issued to another account", serial)
	}
	rec, err := s.st.GetCertificate(r.Context(), serial)
	if err != nil {
		return storeProblem(err)
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return internalProblem("certificate %s cannot be parsed", serial)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	if iss := s.issuerOf(leaf); iss != nil {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: iss.Raw})
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// issuerOf finds the intermediate generation that signed leaf.
func (s *Server) issuerOf(leaf *x509.Certificate) *x509.Certificate {
	for _, iss := range s.ca.Hierarchy().Issuers() {
		if bytes.Equal(iss.Cert.SubjectKeyId, leaf.AuthorityKeyId) && leaf.CheckSignatureFrom(iss.Cert) == nil {
			return iss.Cert
		}
	}
	return nil
}

// subscriberReasons lists revocation.Subscriber, the reasons an ACME client
// may give (RFC 8555, section 7.6, leaves the set to the CA), for errors:
// "0 (unspecified), 1 (keyCompromise), …".
var subscriberReasons = func() string {
	parts := make([]string, len(revocation.Subscriber))
	for i, r := range revocation.Subscriber {
		parts[i] = fmt.Sprintf("%d (%s)", int(r), r)
	}
	return strings.Join(parts, ", ")
}()

type revokePayload struct {
	Certificate string `json:"certificate"`
	Reason      *int   `json:"reason"`
}

// handleRevoke revokes a certificate of this provisioner (RFC 8555, section
// 7.6), signed either by the account that ordered it (kid) or by the
// certificate's own key (jwk).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, jwkOrKID)
	if err != nil {
		return err
	}
	var in revokePayload
	if err := decodePayload(req, &in); err != nil {
		return err
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.Certificate, "="))
	if err != nil {
		return malformed("certificate is not base64url DER")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return malformed("certificate cannot be parsed: %v", err)
	}
	reason := revocation.Unspecified
	if in.Reason != nil {
		reason = revocation.Reason(*in.Reason)
	}
	if !slices.Contains(revocation.Subscriber, reason) {
		return problem(http.StatusBadRequest, probBadRevocationReason, "reason %d is not accepted (use %s)", int(reason), subscriberReasons)
	}
	serial := store.SerialOf(cert.SerialNumber)
	rec, err := s.st.GetCertificate(r.Context(), serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !bytes.Equal(rec.DER, der)) {
		return notFound("certificate %s was not issued by this CA", serial)
	}
	if err != nil {
		return storeProblem(err)
	}
	if rec.Provisioner != p.name {
		return unauthorized("certificate %s was not issued through this ACME directory", serial)
	}
	var actor string
	if req.account != nil {
		o, err := s.st.GetACMEOrderByCertificate(r.Context(), serial)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return storeProblem(err)
		}
		if err != nil || o.AccountID != req.account.ID {
			return unauthorized("account %s did not order certificate %s", req.account.ID, serial)
		}
		actor = "acme:" + req.account.ID
	} else {
		certKey := jose.JSONWebKey{Key: cert.PublicKey}
		want, err1 := thumbprint(&certKey)
		got, err2 := thumbprint(req.key)
		if err1 != nil || err2 != nil || want != got {
			return unauthorized("the JWS is not signed by the certificate's key")
		}
		actor = "acme-cert-key:" + string(serial)
	}
	if rec.Status == store.StatusRevoked {
		return problem(http.StatusBadRequest, probAlreadyRevoked, "certificate %s is already revoked", serial)
	}
	if _, _, err := s.revoker.Revoke(r.Context(), revocation.Request{Serial: string(serial), Reason: reason, Actor: actor}); err != nil {
		if ca.KindOf(err) == ca.KindConflict {
			return problem(http.StatusBadRequest, probAlreadyRevoked, "certificate %s is already revoked", serial)
		}
		return fromCA(err)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

// certID is the RFC 9773 identifier of a certificate: base64url of the
// authority key identifier, ".", base64url of the serial's DER content.
func certID(cert *x509.Certificate) string {
	return base64.RawURLEncoding.EncodeToString(cert.AuthorityKeyId) + "." +
		base64.RawURLEncoding.EncodeToString(serialBytes(cert.SerialNumber))
}

// serialBytes is the content octets of a positive INTEGER.
func serialBytes(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

// parseCertID returns the serial and AKI a certID names.
func parseCertID(id string) (serial store.Serial, aki []byte, ok bool) {
	a, sn, found := strings.Cut(id, ".")
	if !found || a == "" || sn == "" {
		return "", nil, false
	}
	aki, err1 := base64.RawURLEncoding.DecodeString(a)
	raw, err2 := base64.RawURLEncoding.DecodeString(sn)
	if err1 != nil || err2 != nil || len(raw) == 0 || len(raw) > 21 || raw[0]&0x80 != 0 {
		return "", nil, false
	}
	n := new(big.Int).SetBytes(raw)
	if n.Sign() <= 0 {
		return "", nil, false
	}
	return store.SerialOf(n), aki, true
}

// certByID reads the certificate a certID names, checking that its
// authority key identifier matches.
func (s *Server) certByID(ctx context.Context, id string) (store.Certificate, *x509.Certificate, error) {
	serial, aki, ok := parseCertID(id)
	if !ok {
		return store.Certificate{}, nil, malformed("%q is not an ACME renewal information certificate id (base64url AKI '.' base64url serial)", id)
	}
	rec, err := s.st.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return rec, nil, notFound("no certificate %s", serial)
	}
	if err != nil {
		return rec, nil, storeProblem(err)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return rec, nil, internalProblem("certificate %s cannot be parsed", serial)
	}
	if !bytes.Equal(cert.AuthorityKeyId, aki) {
		return rec, nil, notFound("no certificate %s under that authority key identifier", serial)
	}
	return rec, cert, nil
}

// renewalWindow is when a certificate should be renewed (RFC 9773): within
// the last third of its life, leaving the last sixth as margin; for a
// revoked certificate, now.
func renewalWindow(rec store.Certificate, now time.Time) (start, end time.Time) {
	if rec.Status == store.StatusRevoked {
		return now.Add(-time.Hour), now
	}
	life := rec.NotAfter.Sub(rec.NotBefore)
	return rec.NotAfter.Add(-life / 3), rec.NotAfter.Add(-life / 6)
}

type renewalInfo struct {
	SuggestedWindow struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"suggestedWindow"`
}

// handleRenewalInfo answers RFC 9773 renewal information, unauthenticated.
func (s *Server) handleRenewalInfo(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	rec, _, err := s.certByID(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if rec.Provisioner != p.name {
		return notFound("certificate %s was not issued through this ACME directory", rec.Serial)
	}
	start, end := renewalWindow(rec, s.now())
	var out renewalInfo
	out.SuggestedWindow.Start, out.SuggestedWindow.End = rfc3339(start), rfc3339(end)
	retry := min(max(rec.NotAfter.Sub(rec.NotBefore)/12, time.Minute), 6*time.Hour)
	w.Header().Set("Retry-After", strconv.Itoa(int(retry.Seconds())))
	return writeJSON(w, http.StatusOK, out)
}

// checkReplaces checks the RFC 9773 replaces field of a new order: the
// certificate exists, was ordered by this account, and shares an
// identifier with the new order.
func (s *Server) checkReplaces(ctx context.Context, req *request, id string, ids []ident) error {
	rec, _, err := s.certByID(ctx, id)
	if err != nil {
		var prob *Problem
		if errors.As(err, &prob) && prob.Status == http.StatusNotFound {
			return malformed("replaces: %s", prob.Detail)
		}
		return err
	}
	o, err := s.st.GetACMEOrderByCertificate(ctx, rec.Serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeProblem(err)
	}
	if err != nil || o.AccountID != req.account.ID {
		return unauthorized("replaces: certificate %s was not ordered by this account", rec.Serial)
	}
	for _, a := range o.Identifiers {
		for _, b := range ids {
			if a == b {
				return nil
			}
		}
	}
	return malformed("replaces: certificate %s shares no identifier with the new order", rec.Serial)
}

// Package revocation owns taking certificates out of service before they
// expire: the RFC 5280 reasons, and revoking a certificate together with
// the certificates renewed from it, in one store transaction with its audit
// records. Publishing revocation to relying parties — CRLs and OCSP —
// belongs here too (issue 12).
//
// Front doors (the JSON API, ACME) decide who may revoke what; Service
// checks and records it.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
)

// Store is what revocation needs of the store.
type Store interface {
	GetCertificate(ctx context.Context, serial store.Serial) (store.Certificate, error)
	RevokeCertificate(ctx context.Context, r store.Revocation) (renewals []store.Serial, err error)
	RevokeMatching(ctx context.Context, r store.MatchRevocation) ([]store.Serial, error)
	RecordIssuerRevocation(ctx context.Context, r store.IssuerRevocation, ev audit.Event) error
}

// Refuser audits a refused request; *ca.Authority is one, so that every
// refusal goes through the same clipped, aggregated audit.
type Refuser interface {
	Refuse(ctx context.Context, err *ca.Error, actor, subject string, detail map[string]string) error
}

// Service revokes certificates. Safe for concurrent use.
type Service struct {
	st     Store
	refuse Refuser
	now    func() time.Time
	// revoked are told of every serial revoked (OCSP's cache, the CRLs).
	revoked []func(store.Serial)
	// hierarchy, if set, lets RevokeIssuer revoke intermediates.
	hierarchy *ca.Hierarchy
	// issuerRevoked are called after RevokeIssuer, before it returns.
	issuerRevoked []func(context.Context)
}

// OnIssuerRevoked has fn called after every RevokeIssuer, before it
// returns: the server replaces its own credentials that the generation
// signed, so that the admin who asked can go on. Call it before the
// Service is used.
func (s *Service) OnIssuerRevoked(fn func(context.Context)) {
	s.issuerRevoked = append(s.issuerRevoked, fn)
}

// UseHierarchy lets RevokeIssuer revoke generations of h's intermediates.
func (s *Service) UseHierarchy(h *ca.Hierarchy) { s.hierarchy = h }

// OnRevoked has fn told of every serial this Service revokes, after the
// revocation is committed. Call it before the Service is used.
func (s *Service) OnRevoked(fn func(store.Serial)) { s.revoked = append(s.revoked, fn) }

// told tells every OnRevoked function of serials.
func (s *Service) told(serials ...store.Serial) {
	for _, fn := range s.revoked {
		for _, sn := range serials {
			fn(sn)
		}
	}
}

// New returns a Service; now may be nil for time.Now.
func New(st Store, refuse Refuser, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, refuse: refuse, now: now}
}

// Request asks to revoke one certificate. The caller has authorised Actor
// (an admin, the holder of that same certificate, or its ACME account).
type Request struct {
	Serial string // hexadecimal, as ca.ParseSerial reads it
	Reason Reason
	Actor  string
	// Renewals also revokes every certificate renewed from this one.
	Renewals bool
}

// Revoke marks the certificate revoked and returns its record and the
// serials of the renewals revoked with it.
//
// A renewal is the same identity under a newer certificate, often with the
// same key, and renewing needs only the current certificate: so for
// keyCompromise, or when r.Renewals is set, every certificate renewed from
// this one (directly or through other renewals) is revoked with it, in the
// same transaction. Errors are *ca.Error: KindBadRequest for a malformed
// serial or a reason not Accepted, KindNotFound, KindConflict when already
// revoked (the last two audited as refusals).
func (s *Service) Revoke(ctx context.Context, r Request) (store.Certificate, []store.Serial, error) {
	sn, err := ca.ParseSerial(r.Serial)
	if err != nil {
		return store.Certificate{}, nil, &ca.Error{Kind: ca.KindBadRequest, Msg: err.Error()}
	}
	if _, ok := reasonNames[r.Reason]; !ok || r.Reason == RemoveFromCRL {
		return store.Certificate{}, nil, &ca.Error{Kind: ca.KindBadRequest, Msg: fmt.Sprintf("revocation reason %d is not accepted", int(r.Reason))}
	}
	serial := string(sn)
	now := s.now()
	event := func(subject string, extra ...string) audit.Event {
		d := map[string]string{"reason": r.Reason.String()}
		for i := 0; i+1 < len(extra); i += 2 {
			d[extra[i]] = extra[i+1]
		}
		return audit.Event{Time: now, Type: audit.TypeCertificateRevoked, Actor: r.Actor, Subject: subject, Outcome: "success", Detail: d}
	}
	renewals, err := s.st.RevokeCertificate(ctx, store.Revocation{
		Serial: sn, Reason: int(r.Reason), At: now, Event: event(serial),
		Renewals:     r.Renewals || r.Reason == KeyCompromise,
		RenewalEvent: func(renewal store.Serial) audit.Event { return event(string(renewal), "renewed_from_revoked", serial) },
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Certificate{}, nil, s.refuse.Refuse(ctx, &ca.Error{Kind: ca.KindNotFound, Msg: "no certificate with serial " + serial}, r.Actor, serial, nil)
	case errors.Is(err, store.ErrAlreadyRevoked):
		return store.Certificate{}, nil, s.refuse.Refuse(ctx, &ca.Error{Kind: ca.KindConflict, Msg: "certificate " + serial + " is already revoked"}, r.Actor, serial, nil)
	case err != nil:
		return store.Certificate{}, nil, ca.StoreError(err, "revoke certificate")
	}
	s.told(append([]store.Serial{sn}, renewals...)...)
	rec, err := s.st.GetCertificate(ctx, sn)
	if err != nil {
		return store.Certificate{}, nil, ca.StoreError(err, "read the revoked certificate")
	}
	return rec, renewals, nil
}

// Match selects the certificates RevokeMatching revokes together: every
// valid, unexpired certificate that carries Name (its subject or a SAN: a
// DNS name, IP address, e-mail address or SPIFFE ID). RevokeIssuer revokes
// what one intermediate generation signed.
type Match struct {
	Name string
}

// RevokeMatching revokes every certificate m selects, in one transaction,
// each with its audit record, and returns their serials (none is not an
// error). Errors are *ca.Error.
func (s *Service) RevokeMatching(ctx context.Context, m Match, reason Reason, actor string) ([]store.Serial, error) {
	if m.Name == "" {
		return nil, &ca.Error{Kind: ca.KindBadRequest, Msg: "give a name or a SPIFFE ID"}
	}
	if _, ok := reasonNames[reason]; !ok || reason == RemoveFromCRL {
		return nil, &ca.Error{Kind: ca.KindBadRequest, Msg: fmt.Sprintf("revocation reason %d is not accepted", int(reason))}
	}
	matched := "name=" + m.Name
	now := s.now()
	serials, err := s.st.RevokeMatching(ctx, store.MatchRevocation{Name: m.Name, Reason: int(reason), At: now,
		Event: func(serial store.Serial) audit.Event {
			return audit.Event{Time: now, Type: audit.TypeCertificateRevoked, Actor: actor, Subject: string(serial), Outcome: "success",
				Detail: map[string]string{"reason": reason.String(), "matched": ca.Clip(matched)}}
		}})
	if err != nil {
		return nil, ca.StoreError(err, "revoke certificates")
	}
	s.told(serials...)
	return serials, nil
}

// IssuerRevocation is what RevokeIssuer did.
type IssuerRevocation struct {
	// Intermediate is the serial of the revoked generation's certificate,
	// now on the root's CRL.
	Intermediate store.Serial
	// Revoked are the serials of the leaves it had signed that were valid.
	Revoked []store.Serial
	// Replacement, when the revoked generation was the one signing, is the
	// generation rotated in to sign from now on ("NAME/GEN").
	Replacement string
}

// RevokeIssuer takes a compromised intermediate generation out of service:
// the root revokes it (it signs nothing more here, and the root's CRL
// lists it), every valid certificate it signed is revoked in one
// transaction with an audit record each, and if it was the generation
// signing for its name, a new generation is rotated in so that issuance
// goes on. The intermediate's own revocation is audited too. Errors are
// *ca.Error.
func (s *Service) RevokeIssuer(ctx context.Context, name string, gen int, reason Reason, actor string) (IssuerRevocation, error) {
	if s.hierarchy == nil {
		return IssuerRevocation{}, &ca.Error{Kind: ca.KindInternal, Msg: "revoking intermediates is not configured"}
	}
	if _, ok := reasonNames[reason]; !ok || reason == RemoveFromCRL {
		return IssuerRevocation{}, &ca.Error{Kind: ca.KindBadRequest, Msg: fmt.Sprintf("revocation reason %d is not accepted", int(reason))}
	}
	scope := GenerationScope(name, gen)
	var target *ca.Issuer
	for _, iss := range s.hierarchy.Issuers() {
		if iss.Name == name && iss.Generation == gen {
			target = iss
		}
	}
	if target == nil {
		return IssuerRevocation{}, s.refuse.Refuse(ctx, &ca.Error{Kind: ca.KindNotFound, Msg: "no intermediate generation " + ca.Clip(scope) + " in service"}, actor, ca.Clip(scope), nil)
	}
	wasSigning := false
	if cur, err := s.hierarchy.Issuer(name); err == nil && cur.Generation == gen {
		wasSigning = true
	}
	now := s.now()
	out := IssuerRevocation{Intermediate: store.SerialOf(target.Cert.SerialNumber)}
	// The store first: every replica applies what it holds (within its
	// next reload), whatever its copy of ca.json says.
	if err := s.st.RecordIssuerRevocation(ctx, store.IssuerRevocation{Serial: out.Intermediate, Name: name, Generation: gen, RevokedAt: now, Reason: int(reason)},
		audit.Event{Time: now, Type: audit.TypeCertificateRevoked, Actor: actor, Subject: string(out.Intermediate), Outcome: "success",
			Detail: map[string]string{"reason": reason.String(), "intermediate": scope}}); err != nil {
		return out, ca.StoreError(err, "record the intermediate's revocation")
	}
	if _, err := s.hierarchy.RevokeIssuer(ctx, name, gen, now, int(reason)); err != nil {
		return out, ca.StoreError(err, "revoke intermediate "+scope)
	}
	if wasSigning {
		// With an offline root no generation can be made here: the name
		// issues nothing until one is prepared, signed where the root is
		// and imported; the leaves are still revoked below.
		next, err := s.hierarchy.RotateIntermediate(ctx, name)
		switch {
		case errors.Is(err, ca.ErrRootOffline):
		case err != nil:
			return out, ca.StoreError(err, "rotate in a new generation of "+name)
		default:
			out.Replacement = GenerationScope(next.Name, next.Generation)
		}
	}
	matched := "issuer=" + scope
	serials, err := s.st.RevokeMatching(ctx, store.MatchRevocation{Issuer: name, Generation: gen, Reason: int(reason), At: now,
		Event: func(serial store.Serial) audit.Event {
			return audit.Event{Time: now, Type: audit.TypeCertificateRevoked, Actor: actor, Subject: string(serial), Outcome: "success",
				Detail: map[string]string{"reason": reason.String(), "matched": matched}}
		}})
	if err != nil {
		return out, ca.StoreError(err, "revoke the certificates of "+scope)
	}
	out.Revoked = serials
	s.told(serials...)
	s.told(out.Intermediate) // the root's CRL
	for _, fn := range s.issuerRevoked {
		fn(ctx)
	}
	return out, nil
}

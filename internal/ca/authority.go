package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

// Config is what an Authority needs. Hierarchy, Store and Keyring are required.
type Config struct {
	// Hierarchy holds the root and the issuing intermediates.
	Hierarchy *Hierarchy
	// Store records certificates, consumed tokens, provisioners and audit.
	Store store.Store
	// Keyring mints and verifies one-time tokens.
	Keyring *token.Keyring
	// Provisioners gives the provisioners and their compiled policies.
	Provisioners Provisioners
	// Audience is the token audience this CA accepts, normally the public
	// URL of /v1/sign. Replicas behind one load balancer share it.
	Audience string
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
	// JWTKey signs JWT-SVIDs (nil: SignJWTSVID is unavailable); JWTKeyID
	// is its key id in trust bundles.
	JWTKey   crypto.Signer
	JWTKeyID string
	// Pointers, if set, decides the revocation pointers of each leaf and
	// the CRL shard it is listed on (nil: no pointers, shard 0).
	Pointers RevocationPointers
}

// RevocationPointers decides, for a leaf that iss signs with the given
// lifetime, which revocation pointers it carries (none: the zero
// Pointers) and which shard of its issuer's CRL lists it if revoked.
// Implementations are safe for concurrent use.
type RevocationPointers interface {
	LeafPointers(iss *Issuer, lifetime time.Duration) (p Pointers, crlShard int)
}

// Authority is the certificate authority's one issuance path: every front
// door (the JSON API, ACME, the agent API) calls it to turn a request and a
// credential into a recorded, audited certificate. It is safe for concurrent
// use; Run summarises repeated refusals in the audit log.
type Authority struct {
	h        *Hierarchy
	st       store.Store
	keyring  *token.Keyring
	audience string
	now      func() time.Time
	log      *slog.Logger
	provs    Provisioners
	refusals refusals
	jwt      *jwtKey
	pointers RevocationPointers
}

// New returns an Authority.
func New(cfg Config) (*Authority, error) {
	if cfg.Hierarchy == nil || cfg.Store == nil || cfg.Keyring == nil || cfg.Provisioners == nil {
		return nil, errors.New("ca: Config needs Hierarchy, Store, Keyring and Provisioners")
	}
	a := &Authority{
		h:        cfg.Hierarchy,
		st:       cfg.Store,
		keyring:  cfg.Keyring,
		provs:    cfg.Provisioners,
		audience: cfg.Audience,
		now:      cfg.Clock,
		log:      cfg.Logger,
		pointers: cfg.Pointers,
	}
	if a.now == nil {
		a.now = time.Now
	}
	var err error
	if a.jwt, err = newJWTKey(cfg.JWTKey, cfg.JWTKeyID); err != nil {
		return nil, err
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return a, nil
}

// Run summarises repeated anonymous refusals in the audit log until ctx
// ends, and writes what it has counted when it does.
func (a *Authority) Run(ctx context.Context) error {
	a.flushRefusalsLoop(ctx)
	return nil
}

// commit writes item in one durable transaction, which the store shares
// with concurrent writes (its group commit), and returns the item's own
// result: nil, store.ErrTokenReplayed, store.ErrConflict,
// store.ErrStateChanged, or the transaction's error.
func (a *Authority) commit(ctx context.Context, item store.Issuance) error {
	results, err := a.st.CommitIssuances(ctx, []store.Issuance{item})
	switch {
	case err != nil:
		return err
	case len(results) != 1:
		return fmt.Errorf("ca: store returned %d results for one issuance", len(results))
	}
	return results[0]
}

// Hierarchy returns the CA hierarchy the Authority signs with.
func (a *Authority) Hierarchy() *Hierarchy { return a.h }

// Audience returns the token audience this Authority accepts.
func (a *Authority) Audience() string { return a.audience }

// Issued is a certificate that has been recorded and may be handed out.
type Issued struct {
	Certificate *x509.Certificate
	// Chain is the issuing intermediate(s), leaf-side first.
	Chain  []*x509.Certificate
	Serial store.Serial
	Record store.Certificate
}

// PEM returns the leaf followed by its chain, PEM encoded.
func (i *Issued) PEM() []byte {
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.Certificate.Raw})
	for _, c := range i.Chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// reservedError is the refusal of a name in the CA's reserved namespace.
func (a *Authority) reservedError(name string) *Error {
	return &Error{Kind: KindForbidden, Msg: "the name " + name + " is reserved for the CA's own identities", Rule: "reserved " + a.ReservedPrefix()}
}

// ReservedPrefix is the URI namespace the CA keeps for its own identities
// (admins, the server itself); no provisioner policy can grant it.
func (a *Authority) ReservedPrefix() string {
	return "spiffe://" + a.h.TrustDomain() + "/meshpki/"
}

// AdminURIPrefix is the URI SAN prefix that marks an admin certificate.
func (a *Authority) AdminURIPrefix() string { return a.ReservedPrefix() + "admin/" }

// IsAdmin reports whether cert carries an admin identity of this CA. The
// caller must already have verified the chain and checked revocation.
func (a *Authority) IsAdmin(cert *x509.Certificate) (string, bool) {
	prefix := a.AdminURIPrefix()
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, prefix) && len(s) > len(prefix) {
			return s, true
		}
	}
	return "", false
}

func (a *Authority) reservedName(n policy.Names) (string, bool) {
	prefix := a.ReservedPrefix()
	for _, u := range n.URIs {
		if strings.HasPrefix(strings.ToLower(u.String()), prefix) {
			return u.String(), true
		}
	}
	return "", false
}

// deny records a denied request in the audit log and returns err. The audit
// write goes through the same group commit as issuance.
func (a *Authority) deny(ctx context.Context, err *Error, actor, subject string, detail map[string]string) error {
	if detail == nil {
		detail = map[string]string{}
	}
	// Anything here may come from the client: keep each part short.
	for k, v := range detail {
		detail[k] = Clip(v)
	}
	actor, subject = Clip(actor), Clip(subject)
	detail["reason"] = Clip(err.Msg)
	if err.Rule != "" {
		detail["rule"] = err.Rule
	}
	ev := audit.Event{Time: a.now(), Type: audit.TypeRequestDenied, Actor: actor, Subject: subject, Outcome: "denied", Detail: detail}
	// A refusal is recorded even when its client has gone.
	if cerr := a.commit(context.WithoutCancel(ctx), store.Issuance{Audit: []audit.Event{ev}}); cerr != nil {
		a.log.Error("audit of denied request failed", "error", cerr, "actor", actor)
	}
	return err
}

// Refuse is deny for the packages beside ca that decide requests of their
// own (revocation): it audits the refusal as issuance refusals are audited
// and returns err.
func (a *Authority) Refuse(ctx context.Context, err *Error, actor, subject string, detail map[string]string) error {
	return a.deny(ctx, err, actor, subject, detail)
}

// Record appends audit events as the issuance path does, for
// the services beside ca (provisioner changes are recorded by the store with
// the change itself; token minting uses this).
func (a *Authority) Record(ctx context.Context, events ...audit.Event) error {
	if err := a.commit(ctx, store.Issuance{Audit: events}); err != nil {
		return storeErr(err, "record audit events")
	}
	return nil
}

// ReservedName returns the first of names in the CA's reserved namespace,
// and the refusal to give for it, which no provisioner may grant.
func (a *Authority) ReservedName(names policy.Names) (string, *Error, bool) {
	name, ok := a.reservedName(names)
	if !ok {
		return "", nil, false
	}
	return name, a.reservedError(name), true
}

// RecordDenied audits a request that a front door refused before it reached
// the Authority (a malformed or oversized body, say), so that every refusal
// is in the audit log, not only those the Authority decided.
//
// Refusals of anonymous callers are aggregated: the first per source
// address, subject and detail["code"] in each RefusalWindow is recorded at
// once, and the rest of that window's are counted into one summary record
// (detail "repeated") when it ends.
func (a *Authority) RecordDenied(ctx context.Context, actor, subject, reason string, detail map[string]string) {
	if actor == "anonymous" {
		k := refusalKey{source: sourceOf(detail["remote"]), subject: Clip(subject), code: Clip(detail["code"])}
		if !a.refusals.note(k, Clip(reason), a.now()) {
			return
		}
	}
	_ = a.deny(ctx, errorf(KindBadRequest, "%s", reason), actor, subject, detail)
}

// CompiledProvisioner is a provisioner with its policy compiled.
type CompiledProvisioner struct {
	Provisioner store.Provisioner
	Policy      *policy.Compiled
}

// Provisioners is where the issuance path reads provisioners at the moment
// of issuance (internal/provisioner.Cache, which the provisioner admin
// operations invalidate).
type Provisioners interface {
	// Provisioner returns one provisioner; store.ErrNotFound when absent.
	Provisioner(ctx context.Context, name string) (CompiledProvisioner, error)
	// OfType returns the provisioners of one type, in name order.
	OfType(ctx context.Context, typ store.ProvisionerType) ([]CompiledProvisioner, error)
}

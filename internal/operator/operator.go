// Package operator owns who administers the CA (docs/ROLES.md): operators,
// each with one role — admin, operator, auditor or viewer — and, for the
// operator role, the provisioners it acts for; what each role may do
// (Allows); adding an operator with its admin credential, issuing it a new
// one, and retiring it (its certificates revoked); and the short-lived
// lookup the API authorizes every request with.
//
// An operator's credential is a certificate this CA issued carrying the
// URI spiffe://TD/meshpki/admin/NAME, or a certificate from another CA the
// server trusts for operators (meshpki server --operator-ca), enrolled by
// its SPIFFE ID or subject. The bootstrap credential the server writes to
// DIR/secrets is operator "bootstrap", the first admin.
package operator

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bootstrap is the name of the first admin, whose credential the server
// keeps in DIR/secrets.
const Bootstrap = "bootstrap"

// Permission is what an endpoint asks of its caller.
type Permission string

// The permissions, each a column of the role matrix (docs/ROLES.md).
const (
	// Read: certificates, the inventory, provisioners, entries, nodes,
	// alerts, scan schedules, policy dry runs.
	Read Permission = "read"
	// Audit: the audit log, and who holds which role.
	Audit Permission = "audit"
	// Issue: one-time tokens, EAB keys, registration entries, revoking
	// certificates, running scans and reporting them — for an operator,
	// only for the provisioners it was granted.
	Issue Permission = "issue"
	// Administer: provisioners, alert channels and rules, scan schedules,
	// join tokens and node evictions, operators and their roles, dashboard
	// sign-ins.
	Administer Permission = "administer"
)

var matrix = map[store.Role][]Permission{
	store.RoleViewer:   {Read},
	store.RoleAuditor:  {Read, Audit},
	store.RoleOperator: {Read, Issue},
	store.RoleAdmin:    {Read, Audit, Issue, Administer},
}

// Allows reports whether role grants p.
func Allows(role store.Role, p Permission) bool { return slices.Contains(matrix[role], p) }

// DefaultCredentialTTL is how long an operator's credential lives; it is
// renewed over mTLS (meshpki cert renew) like any certificate.
const DefaultCredentialTTL = 30 * 24 * time.Hour

// Authority is what the Service needs of the CA. *ca.Authority is one.
type Authority interface {
	IssueInternal(ctx context.Context, req ca.InternalRequest) (*ca.Issued, error)
	AdminURIPrefix() string
	TrustDomain() string
	Provisioner(ctx context.Context, name string) (store.Provisioner, *policy.Compiled, error)
}

// Revoker revokes certificates by a name they carry. *revocation.Service is
// one.
type Revoker interface {
	RevokeMatching(ctx context.Context, m revocation.Match, reason revocation.Reason, actor string) ([]store.Serial, error)
}

// Config is what a Service needs; Clock may be nil.
type Config struct {
	Store     store.Operators
	Authority Authority
	Revoker   Revoker
	Clock     func() time.Time
}

// Service adds, lists and retires operators and answers who a credential
// belongs to. Safe for concurrent use.
type Service struct {
	// retired, if set, is told of each operator this replica retires.
	retired func(name string)
	st      store.Operators
	ca      Authority
	rev     Revoker
	now     func() time.Time
	mu      sync.Mutex
	seen    map[string]cached
}

type cached struct {
	op      store.Operator
	err     error
	fetched time.Time
}

// CacheTTL is how long a lookup is trusted: a retirement on another
// replica applies within it (on this one, at once).
const CacheTTL = 2 * time.Second

// New returns a Service.
func New(cfg Config) *Service {
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	return &Service{st: cfg.Store, ca: cfg.Authority, rev: cfg.Revoker, now: now, seen: map[string]cached{}}
}

// OnRetired registers fn to be told of each operator retired through this
// Service (the server removes the bootstrap credential's files at once).
func (s *Service) OnRetired(fn func(name string)) { s.retired = fn }

// EnsureBootstrap records the bootstrap admin on first start (and on a
// data directory from before roles); a retired bootstrap stays retired.
func (s *Service) EnsureBootstrap(ctx context.Context) error {
	if _, err := s.st.GetOperator(ctx, Bootstrap); err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	err := s.st.CreateOperator(ctx, store.Operator{Name: Bootstrap, Role: store.RoleAdmin, CreatedAt: s.now()},
		s.event(audit.TypeOperatorAdded, "system", store.Operator{Name: Bootstrap, Role: store.RoleAdmin}))
	if errors.Is(err, store.ErrConflict) { // another replica was first
		return nil
	}
	return err
}

// URI is the identity an operator's credential carries.
func (s *Service) URI(name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: s.ca.TrustDomain(), Path: "/meshpki/admin/" + name}
}

// NameOf returns the operator name in an admin URI.
func (s *Service) NameOf(adminURI string) string {
	return strings.TrimPrefix(adminURI, s.ca.AdminURIPrefix())
}

// Lookup returns the active operator an admin URI names, or for an
// enrolled certificate from another CA its identity names (Identities); a
// *ca.Error of kind Forbidden when there is none or it was retired.
func (s *Service) Lookup(ctx context.Context, adminURI string) (store.Operator, error) {
	op, found, err := s.find(ctx, adminURI)
	switch {
	case err != nil:
		return op, err
	case !found:
		return op, ca.Errorf(ca.KindForbidden, "operator %q does not exist", ca.Clip(s.NameOf(adminURI)))
	case !op.RetiredAt.IsZero():
		return store.Operator{}, ca.Errorf(ca.KindForbidden, "operator %q was retired at %s", op.Name, op.RetiredAt.UTC().Format(time.RFC3339))
	}
	return op, nil
}

// find reads the operator an admin URI or an enrolled identity names,
// retired or not, through the cache.
func (s *Service) find(ctx context.Context, key string) (store.Operator, bool, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.seen[key]
	s.mu.Unlock()
	if !ok || now.Sub(c.fetched) >= CacheTTL {
		var (
			op  store.Operator
			err error
		)
		if strings.HasPrefix(key, s.ca.AdminURIPrefix()) {
			op, err = s.st.GetOperator(ctx, s.NameOf(key))
		} else {
			op, err = s.st.GetOperatorByIdentity(ctx, key)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return op, false, ca.StoreError(err, "read operator")
		}
		c = cached{op: op, err: err, fetched: now}
		s.mu.Lock()
		s.seen[key] = c
		s.mu.Unlock()
	}
	return c.op, c.err == nil, nil
}

// forget drops every cached lookup (a change is rare; the cache is small).
func (s *Service) forget() {
	s.mu.Lock()
	clear(s.seen)
	s.mu.Unlock()
}

// Identities are the names a certificate from another CA may be enrolled
// by, in the order they are tried: each SPIFFE ID among its URIs, then
// "subject:" and its subject DN.
func Identities(cert *x509.Certificate) []string {
	var out []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			out = append(out, u.String())
		}
	}
	if dn := cert.Subject.String(); dn != "" {
		out = append(out, "subject:"+dn)
	}
	return out
}

// External returns the active operator a certificate from another CA was
// enrolled by (its first identity that names one), with that identity.
func (s *Service) External(ctx context.Context, cert *x509.Certificate) (string, store.Operator, error) {
	for _, id := range Identities(cert) {
		_, found, err := s.find(ctx, id)
		if err != nil {
			return id, store.Operator{}, err
		}
		if found {
			op, err := s.Lookup(ctx, id) // refuses a retired one
			return id, op, err
		}
	}
	return "", store.Operator{}, ca.Errorf(ca.KindForbidden, "no operator is enrolled for this certificate (identities: %s)", ca.Clip(strings.Join(Identities(cert), ", ")))
}

// AddRequest adds an operator and issues its first credential.
type AddRequest struct {
	Name         string
	Role         store.Role
	Provisioners []string // operator role only
	// Identity enrolls a certificate from another CA instead of issuing
	// one: a SPIFFE ID, or "subject:" and a subject DN (Identities).
	Identity  string
	PublicKey crypto.PublicKey
	TTL       time.Duration // 0: DefaultCredentialTTL
	Actor     string
}

// Add records the operator (audited), then issues its credential through
// the issuance path (audited).
func (s *Service) Add(ctx context.Context, req AddRequest) (store.Operator, *ca.Issued, error) {
	op := store.Operator{Name: req.Name, Role: req.Role, Provisioners: req.Provisioners, Identity: req.Identity, CreatedAt: s.now()}
	if err := s.check(ctx, op); err != nil {
		return op, nil, err
	}
	if req.PublicKey == nil && op.Identity == "" {
		return op, nil, ca.Errorf(ca.KindBadRequest, "a CSR for the operator's key is required (or an identity, for a certificate from another CA)")
	}
	if req.PublicKey != nil && op.Identity != "" {
		return op, nil, ca.Errorf(ca.KindBadRequest, "give a CSR or an identity, not both: an enrolled operator's certificate comes from its own CA")
	}
	err := s.st.CreateOperator(ctx, op, s.event(audit.TypeOperatorAdded, req.Actor, op))
	switch {
	case errors.Is(err, store.ErrConflict):
		return op, nil, ca.Errorf(ca.KindConflict, "an operator named %q exists (names of retired operators are not reused)", op.Name)
	case err != nil:
		return op, nil, ca.StoreError(err, "record operator")
	}
	s.forget()
	if op.Identity != "" {
		return op, nil, nil // its credential comes from its own CA
	}
	issued, err := s.Credential(ctx, op.Name, req.PublicKey, req.TTL, req.Actor)
	if err != nil {
		return op, nil, fmt.Errorf("operator %s is recorded, but its credential was not issued (issue one with 'meshpki admin credential %s'): %w", op.Name, op.Name, err)
	}
	return op, issued, nil
}

// Credential issues an active operator a new credential for publicKey (a
// lost key, a new machine); its earlier ones stay valid until they expire
// or the operator is retired.
func (s *Service) Credential(ctx context.Context, name string, publicKey crypto.PublicKey, ttl time.Duration, actor string) (*ca.Issued, error) {
	op, err := s.Lookup(ctx, s.ca.AdminURIPrefix()+name)
	if err != nil {
		return nil, err
	}
	if op.Identity != "" {
		return nil, ca.Errorf(ca.KindBadRequest, "operator %s is enrolled by a certificate from another CA (%s); that CA issues its credentials", name, op.Identity)
	}
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	return s.ca.IssueInternal(ctx, ca.InternalRequest{Subject: "meshpki operator " + name, Names: policy.Names{URIs: []*url.URL{s.URI(name)}},
		PublicKey: publicKey, TTL: ttl, Actor: actor})
}

// Retire retires an operator and revokes every certificate carrying its
// identity, in that order: from the retirement on, its credentials are
// refused even before their revocation is published. The last active
// admin cannot be retired.
func (s *Service) Retire(ctx context.Context, name, actor string) ([]store.Serial, error) {
	op, err := s.st.GetOperator(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ca.Errorf(ca.KindNotFound, "no operator named %q", ca.Clip(name))
	}
	if err != nil {
		return nil, ca.StoreError(err, "read operator")
	}
	if !op.RetiredAt.IsZero() {
		return nil, ca.Errorf(ca.KindConflict, "operator %q was already retired", name)
	}
	if op.Role == store.RoleAdmin {
		all, err := s.st.ListOperators(ctx)
		if err != nil {
			return nil, ca.StoreError(err, "list operators")
		}
		active := 0
		for _, o := range all {
			if o.Role == store.RoleAdmin && o.RetiredAt.IsZero() {
				active++
			}
		}
		if active <= 1 {
			return nil, ca.Errorf(ca.KindConflict, "%s is the last active admin; add another admin first ('meshpki admin add NAME --role admin')", name)
		}
	}
	now := s.now()
	if err := s.st.RetireOperator(ctx, name, now, s.event(audit.TypeOperatorRetired, actor, op)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ca.Errorf(ca.KindConflict, "operator %q was already retired", name)
		}
		return nil, ca.StoreError(err, "retire operator")
	}
	s.forget()
	if s.retired != nil {
		s.retired(name)
	}
	if op.Identity != "" {
		return nil, nil // its certificates are another CA's to revoke; refused here from now on
	}
	return s.rev.RevokeMatching(ctx, revocation.Match{Name: s.URI(name).String()}, revocation.CessationOfOperation, actor)
}

// List returns every operator, retired ones included, by name.
func (s *Service) List(ctx context.Context) ([]store.Operator, error) {
	ops, err := s.st.ListOperators(ctx)
	if err != nil {
		return nil, ca.StoreError(err, "list operators")
	}
	return ops, nil
}

func (s *Service) check(ctx context.Context, op store.Operator) error {
	if !store.ValidName(op.Name) {
		return ca.Errorf(ca.KindBadRequest, "operator name %q must be 1 to 64 characters of a-z, 0-9 and '-'", ca.Clip(op.Name))
	}
	if !slices.Contains(store.Roles, op.Role) {
		return ca.Errorf(ca.KindBadRequest, "role %q: one of admin, operator, auditor, viewer", ca.Clip(string(op.Role)))
	}
	if op.Role != store.RoleOperator && len(op.Provisioners) > 0 {
		return ca.Errorf(ca.KindBadRequest, "provisioners are granted to the operator role only; %s reaches every provisioner it may", op.Role)
	}
	if len(op.Provisioners) > 100 {
		return ca.Errorf(ca.KindBadRequest, "at most 100 provisioners per operator")
	}
	for _, p := range op.Provisioners {
		if _, _, err := s.ca.Provisioner(ctx, p); err != nil {
			return err
		}
	}
	if id := op.Identity; id != "" {
		switch {
		case strings.HasPrefix(id, "spiffe://"):
			sid, err := spiffeid.FromString(id)
			if err != nil {
				return ca.Errorf(ca.KindBadRequest, "identity %q is not a SPIFFE ID: %v", ca.Clip(id), err)
			}
			if sid.TrustDomain().Name() == s.ca.TrustDomain() {
				return ca.Errorf(ca.KindBadRequest, "identity %s is in this CA's own trust domain; enroll certificates of another CA, or let this one issue the credential", id)
			}
		case strings.HasPrefix(id, "subject:") && len(id) > len("subject:"):
		default:
			return ca.Errorf(ca.KindBadRequest, "identity %q: a SPIFFE ID (spiffe://…) or subject:DN (subject:CN=alice,O=Corp)", ca.Clip(id))
		}
	}
	return nil
}

func (s *Service) event(typ, actor string, op store.Operator) audit.Event {
	detail := map[string]string{"role": string(op.Role)}
	if op.Identity != "" {
		detail["identity"] = ca.Clip(op.Identity)
	}
	if len(op.Provisioners) > 0 {
		detail["provisioners"] = strings.Join(op.Provisioners, ",")
	}
	if actor == "" {
		actor = "system"
	}
	return audit.Event{Time: s.now(), Type: typ, Actor: actor, Subject: op.Name, Outcome: "success", Detail: detail}
}

// Package provisioner owns provisioners — the named sources of credentials
// and the policy that bounds what each may be granted — and the one-time
// tokens a token provisioner grants: adding, changing and removing
// provisioners with their audit records, the short-lived Cache of compiled
// policies that the issuance path (package ca) reads at the moment of every
// issuance, minting tokens, and answering "would this be allowed?".
//
// The policy language itself is package policy; token encoding is package
// token; the decision at issuance is ca's.
package provisioner

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

// CA is what a Service needs of the certificate authority: its hierarchy
// (a provisioner's issuer must exist), its reserved namespace, and its audit
// of records and refusals. *ca.Authority is one.
type CA interface {
	Hierarchy() *ca.Hierarchy
	ReservedName(names policy.Names) (string, *ca.Error, bool)
	CheckNames(ctx context.Context, provisioner string, req policy.Request) (policy.Decision, error)
	Refuse(ctx context.Context, err *ca.Error, actor, subject string, detail map[string]string) error
	Record(ctx context.Context, events ...audit.Event) error
	CheckNodePattern(p string) error
}

// Config is what a Service needs. All but Clock are required.
type Config struct {
	Store store.Provisioners
	Cache *Cache
	CA    CA
	// Keyring mints the tokens; Audience is the audience they are bound to
	// (the public URL of /v1/sign).
	Keyring  *token.Keyring
	Audience string
	Clock    func() time.Time
}

// Service changes provisioners and mints tokens. Safe for concurrent use.
type Service struct {
	st       store.Provisioners
	cache    *Cache
	ca       CA
	keyring  *token.Keyring
	audience string
	now      func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Cache == nil || cfg.CA == nil || cfg.Keyring == nil {
		return nil, errors.New("provisioner: Config needs Store, Cache, CA and Keyring")
	}
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	return &Service{st: cfg.Store, cache: cfg.Cache, ca: cfg.CA, keyring: cfg.Keyring, audience: cfg.Audience, now: now}, nil
}

// Token lifetimes.
const (
	DefaultTokenTTL = 5 * time.Minute
	MaxTokenTTL     = 24 * time.Hour
)

// TokenRequest asks for a one-time token for /v1/sign.
type TokenRequest struct {
	Subject     string
	SANs        []string
	Provisioner string        // "" when exactly one token provisioner exists
	TTL         time.Duration // the token's own lifetime (default 5m)
	Actor       string        // the admin asking
}

// CreateToken mints a one-time token bound to a provisioner, subject, SANs and
// this CA's audience, after checking the SANs against the provisioner's
// policy, and audits its creation (never the token itself).
func (s *Service) CreateToken(ctx context.Context, req TokenRequest) (ca.TokenGrant, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "token lifetime %s is outside 0 to %s", ttl, MaxTokenTTL)
	}
	if strings.TrimSpace(req.Subject) == "" {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "a token needs a subject")
	}
	if len(req.SANs) == 0 {
		req.SANs = []string{req.Subject}
	}
	// The names travel in the token, which Verify caps: refuse what cannot
	// fit before parsing or evaluating any of it.
	if size := len(req.Subject) + sumLen(req.SANs); size > token.MaxTokenSize {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "the subject and names take %d bytes; a token holds at most %d", size, token.MaxTokenSize)
	}
	names, err := policy.ParseNames(req.SANs)
	if err != nil {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	provName := req.Provisioner
	if provName == "" {
		provName, err = s.onlyTokenProvisioner(ctx)
		if err != nil {
			return ca.TokenGrant{}, err
		}
	}
	prov, err := s.cache.Provisioner(ctx, provName)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ca.TokenGrant{}, ca.Errorf(ca.KindNotFound, "no provisioner named %q", provName)
		}
		return ca.TokenGrant{}, ca.StoreError(err, "read provisioner")
	}
	if prov.Provisioner.Type != store.ProvisionerToken {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "provisioner %q is of type %s; tokens are for token provisioners", provName, prov.Provisioner.Type)
	}
	if _, refusal, ok := s.ca.ReservedName(names); ok {
		return ca.TokenGrant{}, s.ca.Refuse(ctx, refusal, req.Actor, req.Subject, nil)
	}
	if d := prov.Policy.Evaluate(policy.Request{Names: names}); !d.Allowed {
		return ca.TokenGrant{}, s.ca.Refuse(ctx, &ca.Error{Kind: ca.KindForbidden, Msg: "policy of provisioner " + provName + " denies the token: " + d.Reason, Rule: d.Rule}, req.Actor, req.Subject, map[string]string{"provisioner": provName})
	}
	now := s.now()
	claims := token.Claims{
		Provisioner: provName,
		Subject:     req.Subject,
		SANs:        names.Strings(),
		Audience:    s.audience,
		Purpose:     token.PurposeSign,
		IssuedAt:    now,
		NotBefore:   now,
		Expiry:      now.Add(ttl),
		ID:          store.NewID(),
	}
	raw, err := s.keyring.Mint(claims)
	if err != nil {
		return ca.TokenGrant{}, ca.MintError(err)
	}
	ev := audit.Event{Time: now, Type: audit.TypeTokenCreated, Actor: req.Actor, Subject: claims.ID, Outcome: "success",
		Detail: map[string]string{"provisioner": provName, "subject": req.Subject, "sans": strings.Join(claims.SANs, ","), "expires_at": claims.Expiry.UTC().Format(time.RFC3339)}}
	if err := s.ca.Record(ctx, ev); err != nil {
		return ca.TokenGrant{}, err
	}
	return ca.TokenGrant{Token: raw, ID: claims.ID, Provisioner: provName, ExpiresAt: claims.Expiry}, nil
}

func (s *Service) onlyTokenProvisioner(ctx context.Context) (string, error) {
	all, err := s.cache.OfType(ctx, store.ProvisionerToken)
	if err != nil {
		return "", ca.StoreError(err, "list provisioners")
	}
	var names []string
	for _, p := range all {
		names = append(names, p.Provisioner.Name)
	}
	switch len(names) {
	case 0:
		return "", ca.Errorf(ca.KindBadRequest, "no token provisioner exists yet: add one with 'meshpki provisioner add token NAME --allow-dns …'")
	case 1:
		return names[0], nil
	}
	return "", ca.Errorf(ca.KindBadRequest, "several token provisioners exist (%s): name one", strings.Join(names, ", "))
}

// CheckRequest asks whether a provisioner's policy would allow a request.
type CheckRequest struct {
	Provisioner string
	SANs        []string
	TTL         time.Duration
	KeyType     string
}

// CheckPolicy answers allow or deny with the deciding rule, issuing nothing.
func (s *Service) CheckPolicy(ctx context.Context, req CheckRequest) (policy.Decision, error) {
	names, err := policy.ParseNames(req.SANs)
	if err != nil {
		return policy.Decision{}, ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	var kt keys.KeyType
	if req.KeyType != "" {
		if kt, err = keys.ParseKeyType(req.KeyType); err != nil {
			return policy.Decision{}, ca.Errorf(ca.KindBadRequest, "%v", err)
		}
	}
	return s.ca.CheckNames(ctx, req.Provisioner, policy.Request{Names: names, TTL: req.TTL, KeyType: kt})
}

// maxNodePatterns bounds the nodes a node provisioner names, each checked
// at every issuance.
const maxNodePatterns = 1000

// Change is an admin change to a provisioner.
type Change struct {
	Provisioner store.Provisioner
	Actor       string
}

func (s *Service) checkProvisioner(p store.Provisioner) error {
	if !store.ValidName(p.Name) {
		return ca.Errorf(ca.KindBadRequest, "provisioner name %q must be 1 to 64 characters of a-z, 0-9 and '-'", p.Name)
	}
	if !slices.Contains(store.ProvisionerTypes, p.Type) {
		return ca.Errorf(ca.KindBadRequest, "provisioner type %q is not supported (supported: token, acme, spiffe, node)", ca.Clip(string(p.Type)))
	}
	switch {
	case p.Type == store.ProvisionerNode && len(p.Nodes) == 0:
		return ca.Errorf(ca.KindBadRequest, "a node provisioner names at least one node (a node SPIFFE ID, a prefix of them ending in /*, or a node selector)")
	case p.Type != store.ProvisionerNode && len(p.Nodes) > 0:
		return ca.Errorf(ca.KindBadRequest, "nodes apply only to node provisioners")
	case len(p.Nodes) > maxNodePatterns:
		return ca.Errorf(ca.KindBadRequest, "a node provisioner names at most %d nodes; use a prefix or a selector", maxNodePatterns)
	}
	for _, n := range p.Nodes {
		if err := s.ca.CheckNodePattern(n); err != nil {
			return err
		}
	}
	if p.RequireEAB && p.Type != "acme" {
		return ca.Errorf(ca.KindBadRequest, "require_eab applies only to acme provisioners")
	}
	if _, err := policy.Compile(p.Policy); err != nil {
		return ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	if _, err := s.ca.Hierarchy().Issuer(p.Policy.EffectiveIssuer()); err != nil {
		return ca.Errorf(ca.KindBadRequest, "issuer %q does not exist (create it with 'meshpki ca add-issuer')", p.Policy.EffectiveIssuer())
	}
	return nil
}

// Add creates a provisioner after validating its policy.
func (s *Service) Add(ctx context.Context, ch Change) (store.Provisioner, error) {
	return s.write(ctx, ch, audit.TypeProvisionerAdded)
}

// Update replaces a provisioner's type and policy.
func (s *Service) Update(ctx context.Context, ch Change) (store.Provisioner, error) {
	return s.write(ctx, ch, audit.TypeProvisionerUpdated)
}

// write validates and stores ch as an addition or an update (by typ),
// with its audit record, and applies it to the Cache at once.
func (s *Service) write(ctx context.Context, ch Change, typ string) (store.Provisioner, error) {
	p := ch.Provisioner
	if err := s.checkProvisioner(p); err != nil {
		return p, err
	}
	now := s.now()
	p.UpdatedAt = now
	var err error
	if typ == audit.TypeProvisionerAdded {
		p.CreatedAt = now
		err = s.st.CreateProvisioner(ctx, p, s.provisionerEvent(typ, ch.Actor, p, now))
	} else {
		err = s.st.UpdateProvisioner(ctx, p, s.provisionerEvent(typ, ch.Actor, p, now))
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return p, ca.Errorf(ca.KindConflict, "a provisioner named %q exists", p.Name)
	case errors.Is(err, store.ErrNotFound):
		return p, ca.Errorf(ca.KindNotFound, "no provisioner named %q", p.Name)
	case err != nil:
		return p, ca.StoreError(err, "write provisioner")
	}
	s.cache.Invalidate(p.Name)
	return s.st.GetProvisioner(ctx, p.Name)
}

// Remove deletes a provisioner; tokens it granted stop working.
func (s *Service) Remove(ctx context.Context, name, actor string) error {
	now := s.now()
	ev := audit.Event{Time: now, Type: audit.TypeProvisionerRemoved, Actor: actor, Subject: name, Outcome: "success"}
	if err := s.st.DeleteProvisioner(ctx, name, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ca.Errorf(ca.KindNotFound, "no provisioner named %q", name)
		}
		return ca.StoreError(err, "remove provisioner")
	}
	s.cache.Invalidate(name)
	return nil
}

func (s *Service) provisionerEvent(typ, actor string, p store.Provisioner, now time.Time) audit.Event {
	detail := map[string]string{"type": string(p.Type), "policy": policySummary(p.Policy)}
	if len(p.Nodes) > 0 {
		detail["nodes"] = ca.Clip(strings.Join(p.Nodes, ","))
	}
	return audit.Event{Time: now, Type: typ, Actor: actor, Subject: p.Name, Outcome: "success", Detail: detail}
}

func policySummary(p policy.Policy) string {
	var parts []string
	add := func(k string, v []string) {
		if len(v) > 0 {
			parts = append(parts, k+"="+strings.Join(v, ","))
		}
	}
	add("allow_dns", p.AllowDNS)
	add("deny_dns", p.DenyDNS)
	add("allow_ip", p.AllowIP)
	add("deny_ip", p.DenyIP)
	add("allow_uri", p.AllowURI)
	add("deny_uri", p.DenyURI)
	add("allow_email", p.AllowEmail)
	add("deny_email", p.DenyEmail)
	parts = append(parts, "default_ttl="+p.EffectiveDefaultTTL().String(), "max_ttl="+p.EffectiveMaxTTL().String(), "issuer="+p.EffectiveIssuer())
	if len(p.KeyTypes) > 0 {
		kt := make([]string, len(p.KeyTypes))
		for i, k := range p.KeyTypes {
			kt[i] = string(k)
		}
		add("key_types", kt)
	}
	return strings.Join(parts, " ")
}

func sumLen(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

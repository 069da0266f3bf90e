package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

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

// TokenGrant is a minted token. Token is a secret: never log it.
type TokenGrant struct {
	Token       string
	ID          string
	Provisioner string
	ExpiresAt   time.Time
}

// CreateToken mints a one-time token bound to a provisioner, subject, SANs and
// this CA's audience, after checking the SANs against the provisioner's
// policy, and audits its creation (never the token itself).
func (a *Authority) CreateToken(ctx context.Context, req TokenRequest) (TokenGrant, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return TokenGrant{}, errorf(KindBadRequest, "token lifetime %s is outside 0 to %s", ttl, MaxTokenTTL)
	}
	if strings.TrimSpace(req.Subject) == "" {
		return TokenGrant{}, errorf(KindBadRequest, "a token needs a subject")
	}
	if len(req.SANs) == 0 {
		req.SANs = []string{req.Subject}
	}
	// The names travel in the token, which Verify caps: refuse what cannot
	// fit before parsing or evaluating any of it.
	if size := len(req.Subject) + sumLen(req.SANs); size > token.MaxTokenSize {
		return TokenGrant{}, errorf(KindBadRequest, "the subject and names take %d bytes; a token holds at most %d", size, token.MaxTokenSize)
	}
	names, err := policy.ParseNames(req.SANs)
	if err != nil {
		return TokenGrant{}, errorf(KindBadRequest, "%v", err)
	}
	provName := req.Provisioner
	if provName == "" {
		provName, err = a.onlyTokenProvisioner(ctx)
		if err != nil {
			return TokenGrant{}, err
		}
	}
	prov, err := a.provs.get(ctx, provName)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return TokenGrant{}, errorf(KindNotFound, "no provisioner named %q", provName)
		}
		return TokenGrant{}, storeErr(err, "read provisioner")
	}
	if prov.prov.Type != "token" {
		return TokenGrant{}, errorf(KindBadRequest, "provisioner %q is of type %s; tokens are for token provisioners", provName, prov.prov.Type)
	}
	if reserved, ok := a.reservedName(names); ok {
		return TokenGrant{}, a.deny(ctx, a.reservedError(reserved), req.Actor, req.Subject, nil)
	}
	if d := prov.compiled.Evaluate(policy.Request{Names: names}); !d.Allowed {
		return TokenGrant{}, a.deny(ctx, &Error{Kind: KindForbidden, Msg: "policy of provisioner " + provName + " denies the token: " + d.Reason, Rule: d.Rule}, req.Actor, req.Subject, map[string]string{"provisioner": provName})
	}
	now := a.now()
	claims := token.Claims{
		Provisioner: provName,
		Subject:     req.Subject,
		SANs:        names.Strings(),
		Audience:    a.audience,
		Purpose:     token.PurposeSign,
		IssuedAt:    now,
		NotBefore:   now,
		Expiry:      now.Add(ttl),
		ID:          store.NewID(),
	}
	raw, err := a.keyring.Mint(claims)
	if err != nil {
		return TokenGrant{}, mintErr(err)
	}
	ev := audit.Event{Time: now, Type: audit.TypeTokenCreated, Actor: req.Actor, Subject: claims.ID, Outcome: "success",
		Detail: map[string]string{"provisioner": provName, "subject": req.Subject, "sans": strings.Join(claims.SANs, ","), "expires_at": claims.Expiry.UTC().Format(time.RFC3339)}}
	if err := a.commits.commit(ctx, store.Issuance{Audit: []audit.Event{ev}}); err != nil {
		return TokenGrant{}, storeErr(err, "audit token")
	}
	return TokenGrant{Token: raw, ID: claims.ID, Provisioner: provName, ExpiresAt: claims.Expiry}, nil
}

func (a *Authority) onlyTokenProvisioner(ctx context.Context) (string, error) {
	all, err := a.st.ListProvisioners(ctx)
	if err != nil {
		return "", storeErr(err, "list provisioners")
	}
	var names []string
	for _, p := range all {
		if p.Type == "token" {
			names = append(names, p.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", errorf(KindBadRequest, "no token provisioner exists yet: add one with 'meshpki provisioner add token NAME --allow-dns …'")
	case 1:
		return names[0], nil
	}
	return "", errorf(KindBadRequest, "several token provisioners exist (%s): name one", strings.Join(names, ", "))
}

// CheckRequest asks whether a provisioner's policy would allow a request.
type CheckRequest struct {
	Provisioner string
	SANs        []string
	TTL         time.Duration
	KeyType     string
}

// CheckPolicy answers allow or deny with the deciding rule, issuing nothing.
func (a *Authority) CheckPolicy(ctx context.Context, req CheckRequest) (policy.Decision, error) {
	names, err := policy.ParseNames(req.SANs)
	if err != nil {
		return policy.Decision{}, errorf(KindBadRequest, "%v", err)
	}
	var kt keys.KeyType
	if req.KeyType != "" {
		if kt, err = keys.ParseKeyType(req.KeyType); err != nil {
			return policy.Decision{}, errorf(KindBadRequest, "%v", err)
		}
	}
	prov, err := a.provs.get(ctx, req.Provisioner)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return policy.Decision{}, errorf(KindNotFound, "no provisioner named %q", req.Provisioner)
		}
		return policy.Decision{}, storeErr(err, "read provisioner")
	}
	if reserved, ok := a.reservedName(names); ok {
		return policy.Decision{Allowed: false, Rule: "reserved " + a.ReservedPrefix(), Reason: fmt.Sprintf("%q is reserved for the CA's own identities", reserved)}, nil
	}
	return prov.compiled.Evaluate(policy.Request{Names: names, TTL: req.TTL, KeyType: kt}), nil
}

// Provisioner types.
var provisionerTypes = map[string]bool{"token": true, "acme": true, "spiffe": true}

// ProvisionerChange is an admin change to a provisioner.
type ProvisionerChange struct {
	Provisioner store.Provisioner
	Actor       string
}

func (a *Authority) checkProvisioner(p store.Provisioner) error {
	if !validName(p.Name) {
		return errorf(KindBadRequest, "provisioner name %q must be 1 to 64 characters of a-z, 0-9 and '-'", p.Name)
	}
	if !provisionerTypes[p.Type] {
		return errorf(KindBadRequest, "provisioner type %q is not supported (supported: token, acme, spiffe)", p.Type)
	}
	if p.RequireEAB && p.Type != "acme" {
		return errorf(KindBadRequest, "require_eab applies only to acme provisioners")
	}
	if _, err := policy.Compile(p.Policy); err != nil {
		return errorf(KindBadRequest, "%v", err)
	}
	if _, err := a.h.Issuer(p.Policy.EffectiveIssuer()); err != nil {
		return errorf(KindBadRequest, "issuer %q does not exist (create it with 'meshpki ca add-issuer')", p.Policy.EffectiveIssuer())
	}
	return nil
}

// AddProvisioner creates a provisioner after validating its policy.
func (a *Authority) AddProvisioner(ctx context.Context, ch ProvisionerChange) (store.Provisioner, error) {
	p := ch.Provisioner
	if err := a.checkProvisioner(p); err != nil {
		return p, err
	}
	now := a.now()
	p.CreatedAt, p.UpdatedAt = now, now
	ev := a.provisionerEvent(audit.TypeProvisionerAdded, ch.Actor, p, now)
	if err := a.st.CreateProvisioner(ctx, p, ev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return p, errorf(KindConflict, "a provisioner named %q exists", p.Name)
		}
		return p, storeErr(err, "create provisioner")
	}
	a.provs.invalidate(p.Name)
	return a.st.GetProvisioner(ctx, p.Name)
}

// UpdateProvisioner replaces a provisioner's type and policy.
func (a *Authority) UpdateProvisioner(ctx context.Context, ch ProvisionerChange) (store.Provisioner, error) {
	p := ch.Provisioner
	if err := a.checkProvisioner(p); err != nil {
		return p, err
	}
	now := a.now()
	p.UpdatedAt = now
	ev := a.provisionerEvent(audit.TypeProvisionerUpdated, ch.Actor, p, now)
	if err := a.st.UpdateProvisioner(ctx, p, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return p, errorf(KindNotFound, "no provisioner named %q", p.Name)
		}
		return p, storeErr(err, "update provisioner")
	}
	a.provs.invalidate(p.Name)
	return a.st.GetProvisioner(ctx, p.Name)
}

// RemoveProvisioner deletes a provisioner; tokens it granted stop working.
func (a *Authority) RemoveProvisioner(ctx context.Context, name, actor string) error {
	now := a.now()
	ev := audit.Event{Time: now, Type: audit.TypeProvisionerRemoved, Actor: actor, Subject: name, Outcome: "success"}
	if err := a.st.DeleteProvisioner(ctx, name, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(KindNotFound, "no provisioner named %q", name)
		}
		return storeErr(err, "remove provisioner")
	}
	a.provs.invalidate(name)
	return nil
}

func (a *Authority) provisionerEvent(typ, actor string, p store.Provisioner, now time.Time) audit.Event {
	return audit.Event{Time: now, Type: typ, Actor: actor, Subject: p.Name, Outcome: "success",
		Detail: map[string]string{"type": p.Type, "policy": policySummary(p.Policy)}}
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

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func sumLen(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

// mintErr maps a Mint failure: a token too large for Verify is the
// request's fault (400), anything else the server's.
func mintErr(err error) error {
	var tl *token.TooLargeError
	if errors.As(err, &tl) {
		return errorf(KindBadRequest, "%s", strings.TrimPrefix(tl.Error(), "token: "))
	}
	return wrapErr(KindInternal, err, "mint token")
}

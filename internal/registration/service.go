// Package registration owns SPIFFE registration: the entries that say
// which workloads on which nodes get which SPIFFE IDs (with their
// selectors), the node join tokens with which agents attest, and the record
// of attested nodes and their eviction. Minting SVIDs is the issuance
// path's (package ca), which checks every SVID against the spiffe
// provisioners at issuance; attestation and sync are package nodeapi's.
package registration

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Store is what registration needs of the store.
type Store interface {
	store.Entries
	store.Nodes
}

// CA is what a Service needs of the certificate authority: its trust
// domain's rules for SPIFFE IDs, the spiffe provisioners' policy, the join
// token audience, and its audit of records and refusals. *ca.Authority is
// one.
type CA interface {
	ParseSPIFFEID(id string) (spiffeid.ID, error)
	EntryPolicy(ctx context.Context, names policy.Names, ttl time.Duration) error
	JoinAudience() string
	Refuse(ctx context.Context, err *ca.Error, actor, subject string, detail map[string]string) error
	Record(ctx context.Context, events ...audit.Event) error
}

// Service changes registration entries and nodes and mints join tokens.
// Safe for concurrent use.
type Service struct {
	st      Store
	ca      CA
	keyring *token.Keyring
	now     func() time.Time
	// evicted, if set, is told of each node evicted, with its record.
	evicted func(ctx context.Context, node store.Node, actor string)
}

// OnEvicted has fn told of every node evicted, after the eviction is
// committed: the server revokes its node SVID.
func (s *Service) OnEvicted(fn func(ctx context.Context, node store.Node, actor string)) {
	s.evicted = fn
}

// New returns a Service; now may be nil for time.Now.
func New(st Store, authority CA, keyring *token.Keyring, now func() time.Time) (*Service, error) {
	if st == nil || authority == nil || keyring == nil {
		return nil, errors.New("registration: New needs a store, the CA and the token keyring")
	}
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, ca: authority, keyring: keyring, now: now}, nil
}

// CreateJoinToken mints a one-time token that lets one node attest as
// spiffeID.
func (s *Service) CreateJoinToken(ctx context.Context, spiffeID string, ttl time.Duration, actor string) (ca.TokenGrant, error) {
	sid, err := s.ca.ParseSPIFFEID(spiffeID)
	if err != nil {
		return ca.TokenGrant{}, err
	}
	if ttl == 0 {
		ttl = ca.DefaultJoinTTL
	}
	if ttl < 0 || ttl > ca.MaxJoinTTL {
		return ca.TokenGrant{}, ca.Errorf(ca.KindBadRequest, "join token lifetime %s is outside 0 to %s", ttl, ca.MaxJoinTTL)
	}
	now := s.now()
	claims := token.Claims{ID: store.NewID(), Subject: sid.String(), Audience: s.ca.JoinAudience(), Purpose: token.PurposeJoin, IssuedAt: now, NotBefore: now, Expiry: now.Add(ttl)}
	raw, err := s.keyring.Mint(claims)
	if err != nil {
		return ca.TokenGrant{}, ca.MintError(err)
	}
	ev := audit.Event{Time: now, Type: audit.TypeTokenCreated, Actor: actor, Subject: claims.ID, Outcome: "success",
		Detail: map[string]string{"purpose": token.PurposeJoin, "spiffe_id": sid.String(), "expires_at": claims.Expiry.UTC().Format(time.RFC3339)}}
	if err := s.ca.Record(ctx, ev); err != nil {
		return ca.TokenGrant{}, err
	}
	return ca.TokenGrant{Token: raw, ID: claims.ID, ExpiresAt: claims.Expiry}, nil
}

// VerifyJoinToken checks a join token without consuming it: the issuance
// of the node SVID consumes it (SVIDRequest.JoinToken), in the same
// transaction as the certificate and the node record, so a failure between
// the two cannot waste the token or leave a node half attested.
func (s *Service) VerifyJoinToken(ctx context.Context, raw string) (ca.JoinGrant, error) {
	claims, err := s.keyring.Verify(raw, s.ca.JoinAudience(), token.PurposeJoin, s.now())
	if errors.Is(err, keys.ErrMACUnavailable) {
		return ca.JoinGrant{}, &ca.Error{Kind: ca.KindUnavailable, Msg: "the token key's HSM or KMS is unavailable; try again", Err: err}
	}
	if err != nil {
		var te *token.Error
		msg := "invalid token"
		if errors.As(err, &te) {
			msg = strings.TrimPrefix(te.Error(), "token: ")
		}
		return ca.JoinGrant{}, s.ca.Refuse(ctx, ca.Errorf(ca.KindUnauthorized, "join token rejected: %s", msg), "join-token", "", nil)
	}
	return ca.JoinGrant{SPIFFEID: claims.Subject, TokenID: claims.ID, Expires: claims.Expiry}, nil
}

// ListNodes returns every attested node, evicted ones included, ordered by
// SPIFFE ID.
func (s *Service) ListNodes(ctx context.Context) ([]store.Node, error) {
	nodes, err := s.st.ListNodes(ctx)
	if err != nil {
		return nil, ca.StoreError(err, "list nodes")
	}
	return nodes, nil
}

// EvictNode bans the node spiffeID: from now on it can no longer sync
// entries or get SVIDs minted, and it cannot attest again under that ID.
func (s *Service) EvictNode(ctx context.Context, spiffeID, actor string) error {
	sid, err := s.ca.ParseSPIFFEID(spiffeID)
	if err != nil {
		return err
	}
	ev := audit.Event{Time: s.now(), Type: audit.TypeNodeEvicted, Actor: actor, Subject: sid.String(), Outcome: "success"}
	if err := s.st.EvictNode(ctx, sid.String(), ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ca.Errorf(ca.KindNotFound, "no node %s has attested", sid)
		}
		return ca.StoreError(err, "evict node")
	}
	if s.evicted != nil {
		if node, err := s.st.GetNode(ctx, sid.String()); err == nil {
			s.evicted(ctx, node, actor)
		}
	}
	return nil
}

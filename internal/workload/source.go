package workload

import (
	"context"
	"crypto"
	"crypto/x509"
	"time"
)

// SVID is an X.509-SVID the agent holds for one registration entry.
type SVID struct {
	EntryID   string
	SPIFFEID  string
	Selectors []string            // the entry's workload selectors; all must be among the caller's
	Chain     []*x509.Certificate // leaf first, then intermediates (not the root)
	Key       crypto.Signer
	Hint      string
}

// Bundle is a trust domain's trust bundle: X.509 authorities and JWT keys.
type Bundle struct {
	TrustDomain     string // e.g. "example.internal" (no scheme)
	X509Authorities []*x509.Certificate
	JWTKeys         map[string]crypto.PublicKey // key id → key
}

// Source is what the Workload API serves from: the agent's cache. It is safe
// for concurrent use.
type Source interface {
	// SVIDs returns every SVID held now, in the order they are served (a
	// workload's first entitled SVID is its default identity, so the order
	// must be stable), and a channel that is closed at the next change of
	// the SVIDs (rotation, new or removed entry).
	SVIDs() ([]SVID, <-chan struct{})
	// Bundles returns the trust bundles (the agent's own trust domain first)
	// and a channel closed at their next change.
	Bundles() ([]Bundle, <-chan struct{})
	// MintJWTSVID returns a JWT-SVID for entryID (one of the SVIDs the
	// caller is entitled to) with the audiences, and its expiry.
	MintJWTSVID(ctx context.Context, entryID string, audience []string) (token string, expiry time.Time, err error)
}

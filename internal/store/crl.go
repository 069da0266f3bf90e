package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// AllShards asks RevokedCertificates for every shard.
const AllShards = -1

// RevokedEntry is one revoked certificate as a CRL lists it.
type RevokedEntry struct {
	Serial    Serial
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason code
	Shard     int // the certificate's CRLShard
}

// CRLRecord is a signed CRL as published, one per scope. Scopes are the
// revocation package's to name ("default/2" for the full CRL of a
// generation, "default/2/3" for one of its shards, "root" for the root's).
type CRLRecord struct {
	Scope      string
	Number     int64 // the cRLNumber; a scope's only grows
	ThisUpdate time.Time
	NextUpdate time.Time
	// Revision is the RevocationRevision the CRL reflects at least.
	Revision int64
	// Shards, on a generation's full CRL, is how many shard CRLs the
	// generation has.
	Shards int
	DER    []byte // empty in ListCRLs
}

// CRLs is what publishing revocation needs of the store: a counter every
// revocation moves, the revoked certificates of an issuer generation, and
// the signed CRLs replicas share.
type CRLs interface {
	// RevocationRevision counts revocations: every transaction that
	// revokes a certificate (RevokeCertificate, RevokeMatching) adds one.
	RevocationRevision(ctx context.Context) (int64, error)
	// RevokedCertificates calls fn for every revoked certificate of
	// issuer's generation gen that expires after now, on shard (or on
	// every shard when shard is AllShards), ordered by shard, expiry and
	// serial. An error from fn stops it and is returned.
	RevokedCertificates(ctx context.Context, issuer string, gen, shard int, now time.Time, fn func(RevokedEntry) error) error
	// PutCRL records r if its Number is greater than the one recorded for
	// r.Scope (or none is); it reports whether it did. Replicas that race
	// to publish a scope so agree on one CRL per number.
	PutCRL(ctx context.Context, r CRLRecord) (bool, error)
	// ListCRLs returns every recorded CRL without its DER, by scope.
	ListCRLs(ctx context.Context) ([]CRLRecord, error)
	// GetCRL returns the recorded CRL of scope, or ErrNotFound.
	GetCRL(ctx context.Context, scope string) (CRLRecord, error)
	// AssignIssuerGenerations sets IssuerGeneration on every certificate
	// recorded without one, to what generation returns for its issuer
	// name and DER (-1 when none matches), and returns how many it set.
	AssignIssuerGenerations(ctx context.Context, generation func(issuer string, der []byte) int) (int, error)
	// RecordIssuerRevocation records that the root revoked an
	// intermediate generation, with its audit record in the same
	// transaction; a serial recorded before is left as it was (ev is not
	// appended again).
	RecordIssuerRevocation(ctx context.Context, r IssuerRevocation, ev audit.Event) error
	// IssuerRevocations returns every recorded intermediate revocation,
	// by serial.
	IssuerRevocations(ctx context.Context) ([]IssuerRevocation, error)
}

// IssuerRevocation is an intermediate generation the root revoked. The
// store holds it, beside ca.json, so that every replica stops signing
// with the generation even when its copy of DIR/ca is older.
type IssuerRevocation struct {
	Serial     Serial // the intermediate certificate's
	Name       string
	Generation int
	RevokedAt  time.Time
	Reason     int // RFC 5280 CRLReason code
}

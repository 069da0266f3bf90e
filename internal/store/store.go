// Package store owns the contract for durable state: issued certificates and
// their status, consumed one-time token ids, provisioners, and the audit log.
// The interfaces are split by area and every implementation (see sqlstore)
// passes the one conformance suite in storetest. Methods block, take ctx first,
// honour its cancellation, and are safe for concurrent use.
package store

import (
	"context"
	"errors"
	"math/big"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
)

// Errors callers branch on. Implementations wrap them with %w.
var (
	ErrNotFound       = errors.New("store: not found")
	ErrConflict       = errors.New("store: already exists")
	ErrTokenReplayed  = errors.New("store: token already used")
	ErrAlreadyRevoked = errors.New("store: certificate already revoked")
	// ErrRevisionGone: the entry changes asked for are no longer kept.
	ErrRevisionGone = errors.New("store: revision no longer kept")
	// ErrBadCursor: a page cursor this store did not hand out.
	ErrBadCursor = errors.New("store: malformed page cursor")
)

// Status of a certificate as recorded. Expiry is derived from NotAfter.
type Status string

const (
	StatusValid   Status = "valid"
	StatusRevoked Status = "revoked"
	// StatusExpired is only a filter value: valid and past NotAfter.
	StatusExpired Status = "expired"
)

// Serial is a certificate serial number as meshpki records, shows and
// looks it up: lowercase hexadecimal without leading zeros. Make one from a
// certificate with SerialOf, from what a person typed with ca.ParseSerial.
type Serial string

// SerialOf returns the serial of n, a certificate's serial number.
func SerialOf(n *big.Int) Serial { return Serial(n.Text(16)) }

// Certificate is the record of one issued certificate. Times round-trip at
// microsecond precision in UTC.
type Certificate struct {
	Serial      Serial //
	Provisioner string // provisioner that authorised it ("" for internal)
	Issuer      string // name of the intermediate that signed it
	// IssuerGeneration is the generation of Issuer that signed it (0 when
	// not yet known: records from before generations were recorded, until
	// the server assigns them at start).
	IssuerGeneration int
	// CRLShard is the shard of its issuer generation's CRL it is listed
	// on when revoked (and the one its CRL Distribution Point names).
	CRLShard  int
	Subject   string    // subject common name
	Names     []string  // every SAN as text: DNS names, IPs, URIs, emails
	NotBefore time.Time //
	NotAfter  time.Time //
	DER       []byte    // the certificate
	Status    Status    // StatusValid or StatusRevoked
	RevokedAt time.Time // zero unless revoked
	// RevocationReason is the RFC 5280 CRLReason code (0 unspecified … 10).
	RevocationReason int
	RenewedFrom      Serial // the certificate this one renewed, if any
	CreatedAt        time.Time
}

// CertFilter selects certificates for ListCertificates. Zero fields match all.
type CertFilter struct {
	Name           string    // exact match on Subject or any of Names
	RenewedFrom    Serial    // only the renewals of this certificate
	Status         Status    // valid (and not expired at Now), revoked, or expired (at Now)
	ExpiringBefore time.Time // NotAfter before this
	Now            time.Time // reference time for the status filter
	After          string    // page cursor: the Next of the previous page
	Limit          int       // page size; 0 means 100, capped at 1000
}

// CertPage is one page of a listing; Next is "" on the last page.
type CertPage struct {
	Certificates []Certificate
	Next         string
}

// Issuance is one item of a CommitIssuances batch: an optional one-time token
// id to consume, an optional certificate to record, and the audit events that
// go with them.
type Issuance struct {
	TokenID      string    // "" when no token is consumed
	TokenExpires time.Time // when the token id may be forgotten
	Certificate  *Certificate
	// ACMEOrder, when set, is the ACME order this certificate finalizes: it
	// moves from ready to valid with the certificate's serial in the same
	// transaction, and the item fails with ErrStateChanged when the order
	// is no longer ready (finalized by a concurrent request, say).
	ACMEOrder string
	// Node, when set, is the node record this certificate (a node SVID)
	// belongs to: created or replaced, with CertSerial set to the
	// certificate's serial, in the same transaction. The item fails with
	// ErrStateChanged when the node is evicted.
	Node  *Node
	Audit []audit.Event
}

// CertificateReader reads certificate records: what front doors may do
// with them directly.
type CertificateReader interface {
	// GetCertificate returns the record with this serial or ErrNotFound.
	GetCertificate(ctx context.Context, serial Serial) (Certificate, error)
	// ListCertificates returns one page ordered by serial.
	ListCertificates(ctx context.Context, f CertFilter) (CertPage, error)
}

// Certificates records issued certificates and their revocation. Only the
// issuance path (ca) and revocation write them.
type Certificates interface {
	CertificateReader
	// CommitIssuances writes all items in one durable transaction. Item i is
	// written whole or not at all: results[i] is nil when it was written,
	// ErrTokenReplayed when its token id was already consumed (by an earlier
	// commit or an earlier item of this batch), ErrConflict when its serial
	// exists, or ErrStateChanged when its ACMEOrder is not ready or its Node
	// is evicted. The error
	// is for the batch as a whole (nothing was written).
	CommitIssuances(ctx context.Context, items []Issuance) (results []error, err error)
	// RevokeCertificate marks r.Serial revoked and appends r.Event in the
	// same transaction; with r.Renewals it also revokes, in that
	// transaction, every valid certificate renewed from it (directly or
	// through other renewals) and appends r.RenewalEvent for each. It
	// returns the serials of those renewals, in ascending order.
	// ErrNotFound or ErrAlreadyRevoked (for r.Serial) change nothing.
	RevokeCertificate(ctx context.Context, r Revocation) (renewals []Serial, err error)
	// RevokeMatching revokes, in one transaction, every certificate that
	// is valid and unexpired at r.At and carries r.Name (as its subject or
	// a SAN) or was issued by intermediate r.Issuer (exactly one of the
	// two; r.Generation narrows r.Issuer), appending r.Event(serial) for each; it returns their serials
	// in ascending order (none is not an error).
	RevokeMatching(ctx context.Context, r MatchRevocation) ([]Serial, error)
}

// MatchRevocation is one RevokeMatching request.
type MatchRevocation struct {
	Name   string
	Issuer string
	// Generation, with Issuer, limits the match to one generation of it
	// (0: every generation).
	Generation int
	Reason     int       // RFC 5280 CRLReason code
	At         time.Time // zero means now
	Event      func(serial Serial) audit.Event
}

// Revocation is one RevokeCertificate request.
type Revocation struct {
	Serial Serial
	Reason int       // RFC 5280 CRLReason code
	At     time.Time // zero means now
	Event  audit.Event
	// Renewals asks for every certificate renewed from Serial to be revoked
	// too, with the same reason and time; RenewalEvent is the audit record
	// of each.
	Renewals     bool
	RenewalEvent func(serial Serial) audit.Event
}

// Tokens remembers consumed one-time token ids so that a token is accepted
// once across every replica sharing the store.
type Tokens interface {
	// ConsumeToken records id; ErrTokenReplayed when it was already recorded.
	ConsumeToken(ctx context.Context, id string, expires time.Time) error
	// PruneTokens forgets ids whose tokens expired before t.
	PruneTokens(ctx context.Context, before time.Time) error
}

// ProvisionerType says which credentials a provisioner accepts.
type ProvisionerType string

// The provisioner types.
const (
	ProvisionerToken  ProvisionerType = "token"  // one-time tokens on /v1/sign
	ProvisionerACME   ProvisionerType = "acme"   // an ACME directory
	ProvisionerSPIFFE ProvisionerType = "spiffe" // the policy of SPIFFE registration entries
	ProvisionerNode   ProvisionerType = "node"   // certificates attested nodes declare (manifests)
)

// ProvisionerTypes lists the types, in the order the CLI shows them.
var ProvisionerTypes = []ProvisionerType{ProvisionerToken, ProvisionerACME, ProvisionerSPIFFE, ProvisionerNode}

// Provisioner is a named authority to request certificates, with its policy.
type Provisioner struct {
	Name   string
	Type   ProvisionerType
	Policy policy.Policy
	// RequireEAB, for an acme provisioner, refuses new accounts without an
	// external account binding.
	RequireEAB bool
	// Nodes, for a node provisioner, are the attested nodes that may
	// request certificates through it: a node's SPIFFE ID, a prefix of
	// node SPIFFE IDs ending in "/*", or a node selector such as
	// "x509pop:subject:cn:web-1".
	Nodes     []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProvisionerReader reads provisioners.
type ProvisionerReader interface {
	// GetProvisioner returns ErrNotFound if absent.
	GetProvisioner(ctx context.Context, name string) (Provisioner, error)
	// ListProvisioners returns all provisioners ordered by name.
	ListProvisioners(ctx context.Context) ([]Provisioner, error)
}

// Provisioners stores provisioners. Each change appends ev in the same
// transaction. Only package provisioner writes them.
type Provisioners interface {
	ProvisionerReader
	// CreateProvisioner returns ErrConflict if the name exists.
	CreateProvisioner(ctx context.Context, p Provisioner, ev audit.Event) error
	// UpdateProvisioner replaces the type and policy; ErrNotFound if absent.
	UpdateProvisioner(ctx context.Context, p Provisioner, ev audit.Event) error
	// DeleteProvisioner returns ErrNotFound if absent.
	DeleteProvisioner(ctx context.Context, name string, ev audit.Event) error
}

// AuditLog is the append-only, hash-chained audit log.
type AuditLog interface {
	audit.Reader
	// AppendAudit seals (audit.Seal) and appends events in order, in one
	// transaction, serialised with every other append across replicas.
	AppendAudit(ctx context.Context, events ...audit.Event) error
	// CertificateAudit returns up to limit records about the certificate
	// serial, newest first: those committed with its issuance (issued,
	// renewed), then its revocation and refused requests that name it
	// (limit 0 or less means 100, capped at 1000).
	CertificateAudit(ctx context.Context, serial Serial, limit int) ([]audit.Event, error)
}

// Store is everything the CA keeps durably.
type Store interface {
	Certificates
	Tokens
	Provisioners
	AuditLog
	ACME
	Entries
	Nodes
	Inventory
	ScanSchedules
	Alerts
	CRLs
	UISessions
	Operators
	Leadership
	Signals
	// Ping checks the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

package store

import (
	"context"
	"errors"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// ErrStateChanged is returned by an ACME transition whose precondition no
// longer holds: another request moved the object first. Nothing was written.
var ErrStateChanged = errors.New("store: state changed")

// ACME object statuses (RFC 8555, section 7.1.6). Not every status applies to
// every object.
const (
	ACMEPending     = "pending"
	ACMEReady       = "ready"
	ACMEProcessing  = "processing"
	ACMEValid       = "valid"
	ACMEInvalid     = "invalid"
	ACMEDeactivated = "deactivated"
	ACMERevoked     = "revoked"
	ACMEExpired     = "expired"
)

// ACMEAccount is an ACME account of one provisioner.
type ACMEAccount struct {
	ID          string // random, URL-safe; the account URL ends in it
	Provisioner string
	// Thumbprint is the RFC 7638 SHA-256 thumbprint of the account key,
	// base64url without padding; unique within a provisioner.
	Thumbprint string
	KeyJWK     []byte   // the public key as a JWK (JSON)
	Status     string   // valid, deactivated or revoked
	Contact    []string // contact URLs, in the order given
	EABKeyID   string   // the external account binding key used, if any
	CreatedAt  time.Time
}

// ACMEIdentifier is an identifier of an order: Type "dns" or "ip".
type ACMEIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ACMEOrder is an order and the ids of its authorizations.
type ACMEOrder struct {
	ID             string
	AccountID      string
	Provisioner    string
	Status         string // pending, ready, processing, valid, invalid
	Expires        time.Time
	Identifiers    []ACMEIdentifier
	NotBefore      time.Time // as requested; zero when not
	NotAfter       time.Time // as requested; zero when not
	Authorizations []string  // authorization ids, in identifier order
	Error          []byte    // RFC 7807 problem (JSON) when invalid, else nil
	CertSerial     Serial    // the certificate's serial once valid
	Replaces       string    // RFC 9773 certificate id this order replaces, or ""
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// ACMEChallenge is one challenge of an authorization.
type ACMEChallenge struct {
	ID        string // unique across all challenges
	Type      string // http-01, dns-01 or tls-alpn-01
	Token     string
	Status    string    // pending, processing, valid, invalid
	Validated time.Time // zero until valid
	Error     []byte    // RFC 7807 problem (JSON) when invalid, else nil
}

// ACMEAuthorization is an authorization for one identifier of one order,
// with its challenges.
type ACMEAuthorization struct {
	ID         string
	AccountID  string
	OrderID    string
	Identifier ACMEIdentifier // for a wildcard, the base domain
	Wildcard   bool
	Status     string // pending, valid, invalid, deactivated, revoked
	Expires    time.Time
	Challenges []ACMEChallenge
}

// ACMEEABKey is an external account binding key (RFC 8555, section 7.3.4).
// Key holds the HMAC key as the caller wants it kept (meshpki seals it
// before it reaches the store).
type ACMEEABKey struct {
	ID           string
	Provisioner  string
	Key          []byte
	BoundAccount string // "" until an account is created with it
	CreatedAt    time.Time
	BoundAt      time.Time // zero until bound
}

// ChallengeResult is the outcome of validating one challenge.
type ChallengeResult struct {
	AuthorizationID string
	ChallengeID     string
	Valid           bool
	Error           []byte // problem JSON when not valid
	At              time.Time
}

// ACME stores ACME accounts, orders, authorizations, challenges and external
// account binding keys. The transitions are conditional updates: each checks
// the status it moves from and returns ErrStateChanged, writing nothing, when
// another request got there first.
type ACME interface {
	// CreateACMEAccount adds an account. ErrConflict if the provisioner
	// already has an account with that thumbprint. When a.EABKeyID is set the
	// key is bound to the account in the same transaction: ErrNotFound if
	// the provisioner has no such key, ErrStateChanged if it is bound
	// already. ev is appended in the same transaction.
	CreateACMEAccount(ctx context.Context, a ACMEAccount, ev audit.Event) error
	// GetACMEAccount returns the account with this id or ErrNotFound.
	GetACMEAccount(ctx context.Context, id string) (ACMEAccount, error)
	// GetACMEAccountByThumbprint returns the provisioner's account with this
	// key thumbprint or ErrNotFound.
	GetACMEAccountByThumbprint(ctx context.Context, provisioner, thumbprint string) (ACMEAccount, error)
	// UpdateACMEAccount replaces the contact, status, key and thumbprint of
	// the account a.ID (ErrNotFound if absent; ErrStateChanged if it is no
	// longer valid, deactivated and revoked being final; ErrConflict if the
	// new thumbprint belongs to another account of the provisioner) and
	// appends ev.
	UpdateACMEAccount(ctx context.Context, a ACMEAccount, ev audit.Event) error

	// CreateACMEOrder adds an order and its authorizations with their
	// challenges, in one transaction. ErrConflict if o.Replaces is set and
	// another order that is not invalid already replaces that certificate
	// (RFC 9773, section 5: a failed replacement may be retried).
	CreateACMEOrder(ctx context.Context, o ACMEOrder, authzs []ACMEAuthorization) error
	// GetACMEOrder returns the order or ErrNotFound.
	GetACMEOrder(ctx context.Context, id string) (ACMEOrder, error)
	// ListACMEOrders returns the ids of an account's orders, oldest first
	// (by CreatedAt, then id), after the id after ("" for the first page),
	// at most limit of them (0 or less means a default page).
	ListACMEOrders(ctx context.Context, accountID, after string, limit int) ([]string, error)
	// GetACMEAuthorization returns the authorization with its challenges or
	// ErrNotFound.
	GetACMEAuthorization(ctx context.Context, id string) (ACMEAuthorization, error)

	// StartACMEChallenge moves a pending challenge of a pending
	// authorization to processing. ErrStateChanged when either is no
	// longer pending, ErrNotFound when either does not exist.
	StartACMEChallenge(ctx context.Context, authzID, challengeID string) error
	// StaleACMEValidations returns up to limit pending authorizations
	// whose challenge began processing before startedBefore (longest
	// first): validations that the replica running them may not finish.
	StaleACMEValidations(ctx context.Context, startedBefore time.Time, limit int) ([]ACMEAuthorization, error)
	// FinishACMEChallenges records validation results, each in the same way:
	// the processing challenge becomes valid (with its Validated time) or
	// invalid (with its Error); its authorization becomes valid or invalid
	// with it; and the authorization's order, if pending, becomes invalid
	// when the authorization is invalid, or ready when every one of its
	// authorizations is valid (an order made invalid gets the problem as its
	// Error). results[i] is nil, or ErrStateChanged when the challenge was
	// not processing or its authorization no longer pending, or ErrNotFound
	// when either does not exist (nothing is written for that item).
	FinishACMEChallenges(ctx context.Context, items []ChallengeResult) (results []error, err error)
	// DeactivateACMEAuthorization moves a pending or valid authorization to
	// deactivated; ErrStateChanged otherwise, ErrNotFound if absent. A
	// pending or ready order that holds it becomes invalid.
	DeactivateACMEAuthorization(ctx context.Context, authzID string) error
	// An order becomes valid with its certificate in the certificate's own
	// transaction: Certificates.CommitIssuances with Issuance.ACMEOrder.

	// FailACMEOrder moves a ready (or, from older versions, processing)
	// order to invalid with problem, when its finalization was refused.
	// ErrStateChanged when it is in another state, ErrNotFound if absent.
	FailACMEOrder(ctx context.Context, orderID string, problem []byte) error
	// GetACMEOrderByCertificate returns the order whose certificate has this
	// serial, or ErrNotFound.
	GetACMEOrderByCertificate(ctx context.Context, serial Serial) (ACMEOrder, error)

	// CreateACMEEABKey adds a key (ErrConflict if the id exists) and appends
	// ev.
	CreateACMEEABKey(ctx context.Context, k ACMEEABKey, ev audit.Event) error
	// GetACMEEABKey returns the key or ErrNotFound.
	GetACMEEABKey(ctx context.Context, id string) (ACMEEABKey, error)
	// ListACMEEABKeys returns a provisioner's keys ordered by id.
	ListACMEEABKeys(ctx context.Context, provisioner string) ([]ACMEEABKey, error)
}

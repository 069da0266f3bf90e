// Package wire owns the JSON bodies of meshpki's /v1 API: each request and
// response is declared once here, and both the server (package api) and
// the Go client (package client) use these types, so the two cannot drift
// apart. Lengths of time are policy.Duration: Go's syntax plus days and
// weeks ("90m", "24h", "7d"), written as "24h0m0s".
//
// docs/API.md describes each endpoint.
package wire

import (
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// Error is the body of every JSON API error: {"error":{"code","message"}}.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a machine-readable code ("bad_csr", "forbidden", …) and a
// message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SignRequest is the body of POST /v1/sign.
type SignRequest struct {
	// CSR is a PEM "CERTIFICATE REQUEST".
	CSR string `json:"csr"`
	// Token is the one-time token that authorises the names.
	Token string `json:"token"`
	// TTL is the lifetime asked for; zero means the provisioner's default.
	TTL policy.Duration `json:"ttl,omitempty"`
}

// RenewRequest is the body of POST /v1/renew, made with the holder's
// certificate as the TLS client certificate. The body may be empty.
type RenewRequest struct {
	// CSR, if set, rotates the key: the new certificate is for its public
	// key (its names are ignored). Empty keeps the current key.
	CSR string `json:"csr,omitempty"`
	// TTL is the lifetime asked for; zero keeps the old certificate's.
	TTL policy.Duration `json:"ttl,omitempty"`
}

// Issued answers /v1/sign and /v1/renew.
type Issued struct {
	// Certificate is the leaf followed by its chain (without the root), PEM.
	Certificate string       `json:"certificate"`
	Serial      store.Serial `json:"serial"`
	NotBefore   time.Time    `json:"not_before"`
	NotAfter    time.Time    `json:"not_after"`
}

// RevokeRequest is the body of POST /v1/revoke.
type RevokeRequest struct {
	Serial string `json:"serial"`
	// Reason is an RFC 5280 CRLReason name such as "keyCompromise"; empty
	// means "unspecified".
	Reason string `json:"reason,omitempty"`
	// Renewals also revokes every certificate renewed from this one
	// (the server always does for keyCompromise).
	Renewals bool `json:"renewals,omitempty"`
}

// RevokeMatchingRequest is the body of POST /v1/revoke/matching (admins):
// every valid, unexpired certificate with the name, or with the SPIFFE ID,
// or signed by the intermediate generation Issuer ("NAME/GEN", which is
// revoked by the root too); exactly one of the three.
type RevokeMatchingRequest struct {
	Name     string `json:"name,omitempty"`
	SPIFFEID string `json:"spiffe_id,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// RevokedSet answers POST /v1/revoke/matching: the serials revoked.
type RevokedSet struct {
	Revoked []store.Serial `json:"revoked"`
	// Intermediate, for an issuer, is the revoked generation's serial;
	// Replacement the generation rotated in to sign instead, if it was
	// the one signing ("NAME/GEN").
	Intermediate store.Serial `json:"intermediate,omitempty"`
	Replacement  string       `json:"replacement,omitempty"`
}

// Certificate is the API's record of an issued certificate.
type Certificate struct {
	Serial           store.Serial `json:"serial"`
	Subject          string       `json:"subject"`
	Names            []string     `json:"names"`
	Provisioner      string       `json:"provisioner"`
	Issuer           string       `json:"issuer"`
	NotBefore        time.Time    `json:"not_before"`
	NotAfter         time.Time    `json:"not_after"`
	Status           string       `json:"status"` // "valid", "revoked" or "expired"
	RevokedAt        *time.Time   `json:"revoked_at"`
	RevocationReason string       `json:"revocation_reason"`
	RenewedFrom      store.Serial `json:"renewed_from"`
	// PEM is the certificate itself; only GET /v1/certificates/{serial}
	// fills it.
	PEM string `json:"certificate,omitempty"`
	// RevokedRenewals, only in the answer to /v1/revoke, are the serials of
	// the certificates renewed from this one that were revoked with it.
	RevokedRenewals []store.Serial `json:"revoked_renewals,omitempty"`
}

// CertificatePage is one page of GET /v1/certificates. Next is empty on
// the last page.
type CertificatePage struct {
	Certificates []Certificate `json:"certificates"`
	Next         string        `json:"next"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	// Subject becomes the certificate's common name.
	Subject string `json:"subject"`
	// SANs are the names the token grants.
	SANs []string `json:"sans,omitempty"`
	// Provisioner may be empty when exactly one token provisioner exists.
	Provisioner string `json:"provisioner,omitempty"`
	// TTL is the token's own lifetime; zero means the server's default
	// (5m for a certificate token, 1h for a join token).
	TTL policy.Duration `json:"ttl,omitempty"`
	// Join asks for a node join token for SPIFFEID instead.
	Join     bool   `json:"join,omitempty"`
	SPIFFEID string `json:"spiffe_id,omitempty"`
}

// Token answers POST /v1/tokens. Token is a secret until used.
type Token struct {
	Token       string    `json:"token"`
	ID          string    `json:"id"`
	ExpiresAt   time.Time `json:"expires_at"`
	Provisioner string    `json:"provisioner"`
}

// Provisioner is a named source of credentials and the policy that bounds
// what they may be granted (the body of POST and PUT /v1/provisioners, and
// what GET answers).
type Provisioner struct {
	Name   string                `json:"name"`
	Type   store.ProvisionerType `json:"type"` // "token", "acme", "spiffe" or "node"
	Policy policy.Policy         `json:"policy"`
	// RequireEAB, for acme, refuses accounts without external account
	// binding.
	RequireEAB bool `json:"require_eab,omitempty"`
	// Nodes, for node, are the attested nodes that may declare
	// certificates through it: node SPIFFE IDs, prefixes of them ending in
	// "/*", or node selectors ("x509pop:subject:cn:web-1").
	Nodes     []string   `json:"nodes,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// ProvisionerList answers GET /v1/provisioners.
type ProvisionerList struct {
	Provisioners []Provisioner `json:"provisioners"`
}

// PolicyCheckRequest is the body of POST /v1/policy/check, which answers a
// policy.Decision.
type PolicyCheckRequest struct {
	Provisioner string          `json:"provisioner"`
	SANs        []string        `json:"sans"`
	TTL         policy.Duration `json:"ttl,omitempty"`
	KeyType     keys.KeyType    `json:"key_type,omitempty"`
}

// EntryRequest is the body of POST /v1/entries and PUT
// /v1/entries/{id}: a SPIFFE registration entry as the admin describes it.
type EntryRequest struct {
	// SPIFFEID is the identity the matching workloads get, e.g.
	// "spiffe://example.internal/web".
	SPIFFEID string `json:"spiffe_id"`
	// Parent is the SPIFFE ID of the node the entry applies to, or a node
	// selector such as "x509pop:subject:cn:web-1".
	Parent string `json:"parent"`
	// Selectors are workload selectors, such as "unix:uid:1000"; a workload
	// must match all of them.
	Selectors []string `json:"selectors"`
	// X509TTL and JWTTTL are the SVID lifetimes; zero means the server's
	// defaults (1h and 5m).
	X509TTL  policy.Duration `json:"x509_ttl,omitempty"`
	JWTTTL   policy.Duration `json:"jwt_ttl,omitempty"`
	DNSNames []string        `json:"dns_names,omitempty"`
	Hint     string          `json:"hint,omitempty"`
}

// Entry is a registration entry as the server records it.
type Entry struct {
	ID        string          `json:"id"`
	SPIFFEID  string          `json:"spiffe_id"`
	Parent    string          `json:"parent"`
	Selectors []string        `json:"selectors"`
	X509TTL   policy.Duration `json:"x509_ttl"`
	JWTTTL    policy.Duration `json:"jwt_ttl"`
	DNSNames  []string        `json:"dns_names"`
	Hint      string          `json:"hint"`
	// Revision is the store-wide change number of the entry's last change.
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// EntryPage is one page of GET /v1/entries. Next is empty on the last page.
type EntryPage struct {
	Entries []Entry `json:"entries"`
	Next    string  `json:"next"`
}

// Node is an attested node (agent).
type Node struct {
	SPIFFEID string `json:"spiffe_id"`
	// Attestation is how the node proved itself: "join_token" or "x509pop".
	Attestation string   `json:"attestation"`
	Selectors   []string `json:"selectors"`
	// CertSerial is the serial of the node's current node SVID.
	CertSerial store.Serial `json:"cert_serial"`
	Evicted    bool         `json:"evicted"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

// NodeList answers GET /v1/nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// EvictRequest is the body of POST /v1/nodes/evict.
type EvictRequest struct {
	SPIFFEID string `json:"spiffe_id"`
}

// EvictResponse answers POST /v1/nodes/evict.
type EvictResponse struct {
	Evicted string `json:"evicted"`
}

// EABKeyRequest is the body of POST /v1/acme/eab.
type EABKeyRequest struct {
	Provisioner string `json:"provisioner"`
}

// EABKey is a new external account binding key; HMACKey (base64url, as
// ACME clients take it) is a secret shown once.
type EABKey struct {
	KeyID       string    `json:"key_id"`
	HMACKey     string    `json:"hmac_key"`
	Provisioner string    `json:"provisioner"`
	CreatedAt   time.Time `json:"created_at"`
}

// EABKeyInfo describes an external account binding key without its secret.
type EABKeyInfo struct {
	KeyID        string    `json:"key_id"`
	Provisioner  string    `json:"provisioner"`
	BoundAccount string    `json:"bound_account,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	BoundAt      time.Time `json:"bound_at,omitzero"`
}

// EABKeyList answers GET /v1/acme/eab.
type EABKeyList struct {
	Keys []EABKeyInfo `json:"keys"`
}

// Finding is one problem a check found (see docs/SCAN.md for the check
// ids).
type Finding struct {
	Check    string `json:"check"`
	Severity string `json:"severity"` // info, warning, error or critical
	Message  string `json:"message"`
	// Certificate is the index in the chain of the certificate the
	// finding is about: 0 is the leaf.
	Certificate int `json:"certificate"`
}

// InventoryItem is one certificate of GET /v1/inventory.
type InventoryItem struct {
	Source string `json:"source"` // "issued" or "scanned"
	// Fingerprint is the lowercase hex SHA-256 of a scanned certificate:
	// its key in GET /v1/inventory/{fingerprint}.
	Fingerprint string       `json:"fingerprint_sha256,omitempty"`
	Serial      store.Serial `json:"serial"`
	Subject     string       `json:"subject"`
	Issuer      string       `json:"issuer"`
	Provisioner string       `json:"provisioner,omitempty"`
	Names       []string     `json:"names"`
	NotBefore   time.Time    `json:"not_before"`
	NotAfter    time.Time    `json:"not_after"`
	// Status of an issued certificate: valid, revoked or expired.
	Status string `json:"status,omitempty"`
	// Active: a scanned certificate is current at some location; an
	// issued one is valid and not renewed.
	Active       bool              `json:"active"`
	Replaced     bool              `json:"replaced,omitempty"`
	IssuedSerial store.Serial      `json:"issued_serial,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	FirstSeen    time.Time         `json:"first_seen"`
	LastSeen     time.Time         `json:"last_seen"`
	Findings     []Finding         `json:"findings"`
	// Chain (PEM, leaf first) and Sightings only in
	// GET /v1/inventory/{fingerprint}.
	Chain     string     `json:"chain,omitempty"`
	Sightings []Sighting `json:"sightings,omitempty"`
}

// Sighting is where and when a scan saw a certificate.
type Sighting struct {
	Scope     string    `json:"scope"`
	Location  string    `json:"location"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Current   bool      `json:"current"`
	Findings  []Finding `json:"findings"`
}

// InventoryPage is one page of GET /v1/inventory, soonest expiry first.
// Next is empty on the last page.
type InventoryPage struct {
	Items []InventoryItem `json:"items"`
	Next  string          `json:"next"`
}

// ScanReport is the body of POST /v1/inventory/reports: what a scan run
// elsewhere (meshpki scan --report) saw. The server checks each chain
// itself, against its own roots.
type ScanReport struct {
	Results []ReportedResult `json:"results"`
	// Hold is how long a certificate no longer presented stays current
	// (default 1h; see docs/SCAN.md).
	Hold policy.Duration `json:"hold,omitempty"`
	// Labels go with every certificate of the report (team=payments…).
	Labels map[string]string `json:"labels,omitempty"`
}

// ReportedResult is one target of a ScanReport.
type ReportedResult struct {
	Scope  string `json:"scope"`  // the argument the target came from
	Target string `json:"target"` // the endpoint or file
	Kind   string `json:"kind"`   // "endpoint" or "file"
	Error  string `json:"error,omitempty"`
	// Silent: a target expanded from a range or directory with nothing
	// there.
	Silent bool `json:"silent,omitempty"`
	// VerifyName is the name an endpoint's certificate must be valid for.
	VerifyName string `json:"verify_name,omitempty"`
	// Chain is DER, leaf first.
	Chain [][]byte `json:"chain,omitempty"`
}

// ScanReportResult answers POST /v1/inventory/reports.
type ScanReportResult struct {
	Recorded int `json:"recorded"`
}

// ScanSchedule is a scan the server runs every Every: the body of POST
// /v1/scan/schedules and an item of GET /v1/scan/schedules.
type ScanSchedule struct {
	Name       string            `json:"name"`
	Targets    []string          `json:"targets"`
	Every      policy.Duration   `json:"every"`
	SNI        string            `json:"sni,omitempty"`
	StartTLS   string            `json:"starttls,omitempty"`
	Timeout    policy.Duration   `json:"timeout,omitempty"`
	AllowLarge bool              `json:"allow_large,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	NextRun    time.Time         `json:"next_run,omitzero"`
	LastRun    time.Time         `json:"last_run,omitzero"`
	LastError  string            `json:"last_error,omitempty"`
	CreatedAt  time.Time         `json:"created_at,omitzero"`
}

// ScanScheduleList answers GET /v1/scan/schedules.
type ScanScheduleList struct {
	Schedules []ScanSchedule `json:"schedules"`
}

// AlertChannelRequest is the body of POST /v1/alerts/channels. Which
// fields apply depends on Kind (docs/ALERTS.md); URL, Password and the
// rest are kept sealed and never returned.
type AlertChannelRequest struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"` // webhook, slack or email
	Default  bool     `json:"default,omitempty"`
	URL      string   `json:"url,omitempty"`
	SMTP     string   `json:"smtp,omitempty"`
	From     string   `json:"from,omitempty"`
	To       []string `json:"to,omitempty"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	RootPEM  string   `json:"root_pem,omitempty"`
}

// AlertChannel is a channel as the API shows it: no secret.
type AlertChannel struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Default   bool      `json:"default"`
	Endpoint  string    `json:"endpoint"`
	From      string    `json:"from,omitempty"`
	To        []string  `json:"to,omitempty"`
	Username  string    `json:"username,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// AlertChannelList answers GET /v1/alerts/channels.
type AlertChannelList struct {
	Channels []AlertChannel `json:"channels"`
}

// AlertRule is the body of POST /v1/alerts/rules and an item of GET.
type AlertRule struct {
	Name        string            `json:"name"`
	Channel     string            `json:"channel"`
	Names       []string          `json:"names,omitempty"`
	Source      string            `json:"source,omitempty"`
	Issuers     []string          `json:"issuers,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Checks      []string          `json:"checks,omitempty"`
	Within      policy.Duration   `json:"within,omitempty"`
	MinSeverity string            `json:"min_severity,omitempty"`
	Repeat      policy.Duration   `json:"repeat,omitempty"`
	CreatedAt   time.Time         `json:"created_at,omitzero"`
}

// AlertRuleList answers GET /v1/alerts/rules.
type AlertRuleList struct {
	Rules []AlertRule `json:"rules"`
}

// Alert is one alert: a rule, a certificate, a check and a threshold.
type Alert struct {
	Key          string            `json:"key"`
	State        string            `json:"state"` // firing or resolved
	Rule         string            `json:"rule"`
	Channel      string            `json:"channel"`
	Certificate  string            `json:"certificate"`
	Check        string            `json:"check"`
	Threshold    string            `json:"threshold,omitempty"`
	Severity     string            `json:"severity"`
	Summary      string            `json:"summary"`
	Labels       map[string]string `json:"labels"`
	FiredAt      time.Time         `json:"fired_at"`
	LastNotified time.Time         `json:"last_notified,omitzero"`
	ResolvedAt   time.Time         `json:"resolved_at,omitzero"`
}

// AlertList answers GET /v1/alerts.
type AlertList struct {
	Alerts []Alert `json:"alerts"`
	Next   string  `json:"next"`
}

// Notification is one message to a channel: queued, delivered or given up.
type Notification struct {
	ID          int64     `json:"id"`
	Channel     string    `json:"channel"`
	Status      string    `json:"status"`
	Alerts      int       `json:"alerts"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	FailedAt    time.Time `json:"failed_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// NotificationList answers GET /v1/alerts/notifications, newest first.
type NotificationList struct {
	Notifications []Notification `json:"notifications"`
}

// UILogin answers POST /v1/ui/logins (admins): a one-time URL that signs
// the admin in to the dashboard, and when it stops working.
type UILogin struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// OperatorRequest is the body of POST /v1/admins (a new operator and its
// first credential) and of POST /v1/admins/{name}/credential (a new
// credential; name, role and provisioners are then ignored).
type OperatorRequest struct {
	Name         string          `json:"name,omitempty"`
	Role         store.Role      `json:"role,omitempty"` // admin, operator, auditor or viewer
	Provisioners []string        `json:"provisioners,omitempty"`
	CSR          string          `json:"csr,omitempty"` // PEM: the operator's key, made where it will be used
	TTL          policy.Duration `json:"ttl,omitempty"`
	// Identity enrolls a certificate from another CA the server trusts
	// for operators instead of a CSR: a SPIFFE ID, or "subject:DN".
	Identity string `json:"identity,omitempty"`
}

// Operator is who administers the CA, with which role.
type Operator struct {
	Name         string     `json:"name"`
	Role         store.Role `json:"role"`
	Provisioners []string   `json:"provisioners"`
	Identity     string     `json:"identity,omitempty"` // of an enrolled certificate from another CA
	CreatedAt    time.Time  `json:"created_at"`
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
}

// OperatorList answers GET /v1/admins.
type OperatorList struct {
	Operators []Operator `json:"operators"`
}

// OperatorCredential answers POST /v1/admins and its credential route;
// Certificate is absent for an operator enrolled by identity.
type OperatorCredential struct {
	Operator    Operator `json:"operator"`
	Certificate *Issued  `json:"certificate,omitempty"`
}

// AuditEvent is one record of the audit log.
type AuditEvent struct {
	Seq     int64             `json:"seq"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Actor   string            `json:"actor"`
	Subject string            `json:"subject"`
	Outcome string            `json:"outcome"`
	Detail  map[string]string `json:"detail,omitempty"`
}

// AuditPage answers GET /v1/audit.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
}

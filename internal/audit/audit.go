// Package audit owns the hash-chained audit log: the Event record, how each
// record is sealed to the one before it, and verification of a whole chain.
// Storage is the store package's job; this package only defines and checks.
package audit

import "time"

// Event types appended by the CA.
const (
	TypeCertificateIssued  = "certificate.issued"
	TypeCertificateRenewed = "certificate.renewed"
	TypeCertificateRevoked = "certificate.revoked"
	TypeTokenCreated       = "token.created"
	TypeRequestDenied      = "request.denied"
	TypeProvisionerAdded   = "provisioner.added"
	TypeProvisionerUpdated = "provisioner.updated"
	TypeProvisionerRemoved = "provisioner.removed"
	TypeCAInitialized      = "ca.initialized"
	TypeCARotated          = "ca.intermediate_rotated"
	TypeCAIssuerAdded      = "ca.issuer_added"
	TypeJWTSVIDIssued      = "jwt_svid.issued"
	TypeEntryCreated       = "entry.created"
	TypeEntryUpdated       = "entry.updated"
	TypeEntryDeleted       = "entry.deleted"
	TypeNodeAttested       = "node.attested"
	TypeNodeEvicted        = "node.evicted"
	TypeScheduleAdded      = "scan.schedule_added"
	TypeScheduleRemoved    = "scan.schedule_removed"
	TypeChannelAdded       = "alert.channel_added"
	TypeChannelRemoved     = "alert.channel_removed"
	TypeRuleAdded          = "alert.rule_added"
	TypeRuleRemoved        = "alert.rule_removed"
	TypeUILoginCreated     = "ui.login_created"
	TypeUISignedIn         = "ui.signed_in"
	TypeUISignedOut        = "ui.signed_out"
	TypeOperatorAdded      = "operator.added"
	TypeOperatorRetired    = "operator.retired"
)

// Event is one audit record. Seq, PrevHash and Hash are assigned when the
// record is appended (see Seal); callers fill in the rest.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Actor   string    `json:"actor"`   // who asked: "admin:<uri>", "token:<jti>", "cert:<serial>", "system"
	Subject string    `json:"subject"` // what it was about: a serial, a provisioner name, a token id
	Outcome string    `json:"outcome"` // "success" or "denied"
	// Detail carries extra named fields (names, reason, rule). Never a key or token.
	Detail   map[string]string `json:"detail,omitempty"`
	PrevHash []byte            `json:"prev_hash"`
	Hash     []byte            `json:"hash"`
}

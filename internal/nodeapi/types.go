// Package nodeapi owns the channel between agents and the server: gRPC (with
// a JSON codec, content subtype "json") over mTLS on the server's HTTPS
// port. A node attests once (a one-time join token) and gets a node SVID;
// with it, it syncs the registration entries that apply to it — a snapshot,
// then changes pushed as they happen — and has SVIDs minted in batches. The
// server side is Server; the agent side is Client.
package nodeapi

import (
	"encoding/json"
	"time"

	"google.golang.org/grpc/encoding"
)

// ServiceName is the gRPC service of the node API.
const ServiceName = "meshpki.node.v1.Node"

// codec is JSON on the wire; registered so that the server picks it for
// content subtype "json" and clients ask for it.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (codec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (codec) Name() string                       { return "json" }

func init() { encoding.RegisterCodec(codec{}) }

// AttestRequest proves who a node is and asks for its node SVID.
type AttestRequest struct {
	JoinToken string   `json:"join_token,omitempty"`
	X509PoP   *X509PoP `json:"x509pop,omitempty"`
	CSR       []byte   `json:"csr"` // DER; the node SVID's key
}

// AttestResponse is the node SVID and the trust bundle.
type AttestResponse struct {
	SPIFFEID string   `json:"spiffe_id"`
	Chain    [][]byte `json:"chain"` // DER, leaf first
	Bundle   Bundle   `json:"bundle"`
}

// Bundle is what an agent trusts and hands to workloads.
type Bundle struct {
	TrustDomain string   `json:"trust_domain"`
	X509        [][]byte `json:"x509"` // DER: roots and current intermediates
	// JWTKeys are the JWT-SVID public keys, PKIX DER by key id.
	JWTKeys  map[string][]byte `json:"jwt_keys"`
	Sequence int64             `json:"sequence"`
}

// Entry is a registration entry as an agent needs it.
type Entry struct {
	ID        string        `json:"id"`
	SPIFFEID  string        `json:"spiffe_id"`
	Selectors []string      `json:"selectors"`
	X509TTL   time.Duration `json:"x509_ttl"`
	JWTTTL    time.Duration `json:"jwt_ttl"`
	DNSNames  []string      `json:"dns_names,omitempty"`
	Hint      string        `json:"hint,omitempty"`
	Revision  int64         `json:"revision"`
	// CreatedAt orders a workload's SVIDs: the oldest entry's comes first
	// and is the workload's default identity.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// SyncRequest starts a sync stream.
type SyncRequest struct{}

// SyncResponse is one message of a sync stream: the first is a snapshot
// (Full) of every entry that applies to the node; later ones carry only
// changes. Bundle is set when the bundle changed.
type SyncResponse struct {
	Full     bool     `json:"full,omitempty"`
	Entries  []Entry  `json:"entries,omitempty"` // created or changed
	Removed  []string `json:"removed,omitempty"` // entry ids no longer applying
	Revision int64    `json:"revision"`
	Bundle   *Bundle  `json:"bundle,omitempty"`
}

// MintRequest asks for X.509-SVIDs for entries of the node.
type MintRequest struct {
	Items []MintItem `json:"items"`
}

// MintItem is one SVID to mint.
type MintItem struct {
	EntryID string `json:"entry_id"`
	CSR     []byte `json:"csr"` // DER
}

// MintResponse answers item by item.
type MintResponse struct {
	Items []MintResult `json:"items"`
}

// MintResult is one minted SVID, or why not.
type MintResult struct {
	EntryID string   `json:"entry_id"`
	Chain   [][]byte `json:"chain,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// JWTRequest asks for a JWT-SVID.
type JWTRequest struct {
	EntryID  string   `json:"entry_id"`
	Audience []string `json:"audience"`
}

// JWTResponse is a JWT-SVID.
type JWTResponse struct {
	Token  string    `json:"token"`
	Expiry time.Time `json:"expiry"`
}

// RenewRequest asks for a new node SVID.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// DeclaredRequest asks for a certificate the node declared (a manifest),
// through a node provisioner that names the node.
type DeclaredRequest struct {
	Provisioner string        `json:"provisioner"`
	CSR         []byte        `json:"csr"`           // DER; its names are the names asked for
	TTL         time.Duration `json:"ttl,omitempty"` // 0 for the provisioner's default
	// Manifest names the declaration for the audit log ("FILE: NAME").
	Manifest string `json:"manifest,omitempty"`
}

// DeclaredResponse is the certificate and what a relying party trusts.
type DeclaredResponse struct {
	Chain [][]byte `json:"chain"` // DER, leaf first, then its intermediates
	Roots [][]byte `json:"roots"` // DER: the CA's root
}

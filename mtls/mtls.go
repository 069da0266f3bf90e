// Package mtls is the mTLS of meshpki's proxy as a library a Go service
// links: tls.Configs that present the workload's current X509-SVID at each
// handshake (from the agent's Workload API, or watched files, following
// every rotation without a lock on the handshake path) and that verify and
// authorise the peer by SPIFFE ID. docs/MTLS.md describes it.
package mtls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/internal/crlset"
	"github.com/meshpki/meshpki/internal/proxy"
)

// Types of the library; see internal/proxy for their methods.
type (
	// Holder holds the workload's current identity.
	Holder = proxy.Holder
	// Identity is an SVID, its key and the trust bundles, at one moment.
	Identity = proxy.Identity
	// Authorizer is an allow list of peers.
	Authorizer = proxy.Authorizer
	// Peer is a verified peer.
	Peer = proxy.Peer
	// Refusal is why a peer was refused.
	Refusal = proxy.Refusal
	// Options shape the tls.Configs (TLS 1.2 is opt-in).
	Options = proxy.TLSOptions
	// Files name an SVID, its key and a trust bundle kept in PEM files.
	Files = proxy.Files
)

// NewHolder returns a Holder with no identity yet; WatchWorkloadAPI or
// WatchFiles fill it, and Ready is closed once they have.
func NewHolder() *Holder { return proxy.NewHolder() }

// Allow reads an allow list: SPIFFE IDs ("spiffe://td/ns/app"), every ID
// under a path ("spiffe://td/ns/*"), a trust domain ("spiffe://td") or a
// DNS name ("dns:web.internal").
func Allow(entries ...string) (Authorizer, error) { return proxy.ParseAuthorizer(entries) }

// WatchWorkloadAPI keeps h current from the Workload API at addr ("" for
// SPIFFE_ENDPOINT_SOCKET) until ctx ends.
func WatchWorkloadAPI(ctx context.Context, addr string, h *Holder, log *slog.Logger) error {
	return proxy.WatchWorkloadAPI(ctx, addr, h, log)
}

// WatchFiles keeps h current from files, looked at every interval, until
// ctx ends.
func WatchFiles(ctx context.Context, f Files, every time.Duration, h *Holder, log *slog.Logger) error {
	return proxy.WatchFiles(ctx, f, every, h, log)
}

// ServerConfig requires a client certificate that chains to the bundle of
// the client's trust domain, admits the clients allow lists, and presents
// h's current SVID.
func ServerConfig(h *Holder, allow Authorizer, o Options) *tls.Config {
	return proxy.ServerConfig(h, allow, o)
}

// ClientConfig presents h's current SVID and accepts a server allow
// lists, verified by SPIFFE ID rather than host name.
func ClientConfig(h *Holder, allow Authorizer, o Options) *tls.Config {
	return proxy.ClientConfig(h, allow, o)
}

// PeerOf returns the verified peer of a connection made with ServerConfig
// or ClientConfig (for an HTTP handler: PeerOf(*r.TLS)).
func PeerOf(cs tls.ConnectionState) (Peer, error) { return proxy.PeerOf(cs) }

// CRLs holds CRLs fetched from their URLs and refreshed in the background
// with conditional GETs; set it as Options.Revocation and run its Run
// method, and handshakes with a revoked peer fail (a Refusal with reason
// "revoked") without a network call.
type CRLs = crlset.Set

// NewIdentity makes an Identity from an SVID chain (leaf first), its key
// and the root certificates of each trusted trust domain, for a Holder's
// Store when the identity comes from elsewhere.
func NewIdentity(chain []*x509.Certificate, key crypto.Signer, bundles map[spiffeid.TrustDomain][]*x509.Certificate) (*Identity, error) {
	return proxy.NewIdentity(chain, key, bundles)
}

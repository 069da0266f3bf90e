// Package proxy owns mTLS for services that cannot do it themselves: the
// workload's identity (from the agent's Workload API, or watched files) held
// behind an atomic pointer, peer verification against the trust bundles and
// authorisation by SPIFFE ID or DNS name, the tls.Configs a Go service can
// link, and the inbound and outbound proxies of `meshpki proxy`.
// docs/MTLS.md describes it.
package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Identity is what this workload presents and trusts at one moment. It is
// immutable: a rotation makes a new one.
type Identity struct {
	// Certificate is the X509-SVID with its chain and key, Leaf set.
	Certificate *tls.Certificate
	ID          spiffeid.ID
	// Roots are the trust bundles by trust domain.
	Roots map[spiffeid.TrustDomain]*x509.CertPool
}

// NotAfter is when the SVID expires.
func (id *Identity) NotAfter() time.Time { return id.Certificate.Leaf.NotAfter }

// NewIdentity makes an Identity from an SVID chain (leaf first), its key and
// the bundles (root certificates) of each trust domain trusted.
func NewIdentity(chain []*x509.Certificate, key any, bundles map[spiffeid.TrustDomain][]*x509.Certificate) (*Identity, error) {
	if len(chain) == 0 {
		return nil, errors.New("proxy: an SVID needs a certificate")
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("proxy: the certificate is not an X509-SVID: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := make(map[spiffeid.TrustDomain]*x509.CertPool, len(bundles))
	for td, certs := range bundles {
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		roots[td] = pool
	}
	if _, ok := roots[id.TrustDomain()]; !ok {
		return nil, fmt.Errorf("proxy: no trust bundle for the SVID's own trust domain %s", id.TrustDomain())
	}
	return &Identity{Certificate: cert, ID: id, Roots: roots}, nil
}

// Holder keeps the current Identity behind an atomic pointer: handshakes
// read it without a lock, and a rotation is one store that every new
// handshake sees at once while open connections go on.
type Holder struct {
	cur       atomic.Pointer[Identity]
	readyOnce sync.Once
	ready     chan struct{}
	rotations atomic.Int64
}

// NewHolder returns a Holder with no identity yet.
func NewHolder() *Holder { return &Holder{ready: make(chan struct{})} }

// Load returns the current identity, or nil before the first.
func (h *Holder) Load() *Identity { return h.cur.Load() }

// Store makes id the current identity.
func (h *Holder) Store(id *Identity) {
	if h.cur.Swap(id) != nil {
		h.rotations.Add(1)
	}
	h.readyOnce.Do(func() { close(h.ready) })
}

// Ready is closed once an identity is held.
func (h *Holder) Ready() <-chan struct{} { return h.ready }

// Rotations counts identities stored after the first.
func (h *Holder) Rotations() int64 { return h.rotations.Load() }

// ErrNoIdentity: no identity is held yet.
var ErrNoIdentity = errors.New("proxy: no identity yet (is the agent's Workload API reachable?)")

// current returns the identity or ErrNoIdentity.
func (h *Holder) current() (*Identity, error) {
	if id := h.cur.Load(); id != nil {
		return id, nil
	}
	return nil, ErrNoIdentity
}

package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TLSOptions shape the tls.Configs.
type TLSOptions struct {
	// AllowTLS12 accepts TLS 1.2 (with ECDHE and AEAD suites only); TLS 1.3
	// alone by default.
	AllowTLS12 bool
	// Revocation, if set, refuses peers with a revoked certificate in
	// their verified chain (reason "revoked"), from revocation data it
	// holds: *crlset.Set. It must not block.
	Revocation RevocationChecker
}

// RevocationChecker says whether a verified chain (leaf first, each
// certificate followed by its issuer) holds a revoked certificate.
type RevocationChecker interface {
	Check(chain []*x509.Certificate) error
}

// aeadSuites are the TLS 1.2 suites allowed: forward secrecy and AEAD.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func (o TLSOptions) base() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if o.AllowTLS12 {
		cfg.MinVersion, cfg.CipherSuites = tls.VersionTLS12, aeadSuites
	}
	return cfg
}

// ServerConfig is a tls.Config for a server that presents h's current
// SVID at each handshake, requires a client certificate that chains to the
// trust bundle of the client's trust domain, and admits the clients authz
// allows. A handshake refused by authorisation fails with a *Refusal.
func ServerConfig(h *Holder, authz Authorizer, opts TLSOptions) *tls.Config {
	cfg := opts.base()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		id, err := h.current()
		if err != nil {
			return nil, err
		}
		return id.Certificate, nil
	}
	// Verified below against the bundle of the peer's own trust domain,
	// which crypto/tls's single ClientCAs pool cannot express.
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := h.current()
		if err != nil {
			return err
		}
		_, err = verifyPeer(id, authz, cs.PeerCertificates, x509.ExtKeyUsageClientAuth, opts.Revocation)
		return err
	}
	return cfg
}

// ClientConfig is a tls.Config for a client that presents h's current SVID
// and accepts a server whose certificate chains to its trust domain's
// bundle and that authz allows. The server's name is not checked against
// DNS (the SPIFFE ID is the identity) unless authz says so with dns:NAME.
func ClientConfig(h *Holder, authz Authorizer, opts TLSOptions) *tls.Config {
	cfg := opts.base()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		id, err := h.current()
		if err != nil {
			return nil, err
		}
		return id.Certificate, nil
	}
	cfg.InsecureSkipVerify = true //nolint:gosec // verified in VerifyConnection, against the bundles
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := h.current()
		if err != nil {
			return err
		}
		_, err = verifyPeer(id, authz, cs.PeerCertificates, x509.ExtKeyUsageServerAuth, opts.Revocation)
		return err
	}
	return cfg
}

// PeerOf returns the peer of a connection that completed a handshake
// under ServerConfig or ClientConfig.
func PeerOf(cs tls.ConnectionState) (Peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return Peer{}, errors.New("proxy: no peer certificate")
	}
	leaf := cs.PeerCertificates[0]
	p := Peer{Leaf: leaf}
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		p.ID = id
	}
	return p, nil
}

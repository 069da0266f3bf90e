package proxy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Rule is one entry of an allow list: a SPIFFE ID exactly
// ("spiffe://td/ns/app"), every ID under a path ("spiffe://td/ns/*"), every
// ID of a trust domain ("spiffe://td"), or a DNS SAN ("dns:web.internal").
type Rule struct {
	kind  ruleKind
	value string // ID, path prefix with its trailing '/', trust domain, DNS name
}

type ruleKind int

const (
	ruleExact ruleKind = iota
	rulePrefix
	ruleDomain
	ruleDNS
)

func (r Rule) String() string {
	switch r.kind {
	case rulePrefix:
		return r.value + "*"
	case ruleDomain:
		return "spiffe://" + r.value
	case ruleDNS:
		return "dns:" + r.value
	}
	return r.value
}

// ParseRule reads an allow-list entry.
func ParseRule(s string) (Rule, error) {
	if name, ok := strings.CutPrefix(s, "dns:"); ok {
		if name == "" || strings.ContainsAny(name, "/ ") {
			return Rule{}, fmt.Errorf("%q: a DNS rule is dns:NAME", s)
		}
		return Rule{kind: ruleDNS, value: strings.ToLower(name)}, nil
	}
	if prefix, ok := strings.CutSuffix(s, "/*"); ok {
		id, err := spiffeid.FromString(prefix)
		if err != nil || id.Path() == "" {
			return Rule{}, fmt.Errorf("%q: a prefix rule is spiffe://TRUST-DOMAIN/PATH/*", s)
		}
		return Rule{kind: rulePrefix, value: id.String() + "/"}, nil
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return Rule{}, fmt.Errorf("%q is not a SPIFFE ID, spiffe://TD/PATH/*, spiffe://TD or dns:NAME: %v", s, err)
	}
	if id.Path() == "" {
		return Rule{kind: ruleDomain, value: id.TrustDomain().Name()}, nil
	}
	return Rule{kind: ruleExact, value: id.String()}, nil
}

// Authorizer decides whether a verified peer may connect. An empty
// Authorizer allows nobody: an allow list is required.
type Authorizer []Rule

// ParseAuthorizer reads allow-list entries.
func ParseAuthorizer(entries []string) (Authorizer, error) {
	var a Authorizer
	for _, e := range entries {
		r, err := ParseRule(e)
		if err != nil {
			return nil, err
		}
		a = append(a, r)
	}
	return a, nil
}

// allows reports whether a peer with SPIFFE ID id (zero when it has none)
// and DNS SANs dns is allowed.
func (a Authorizer) allows(id spiffeid.ID, dns []string) bool {
	for _, r := range a {
		switch r.kind {
		case ruleExact:
			if !id.IsZero() && id.String() == r.value {
				return true
			}
		case rulePrefix:
			if !id.IsZero() && strings.HasPrefix(id.String(), r.value) {
				return true
			}
		case ruleDomain:
			if !id.IsZero() && id.TrustDomain().Name() == r.value {
				return true
			}
		case ruleDNS:
			for _, d := range dns {
				if strings.EqualFold(d, r.value) {
					return true
				}
			}
		}
	}
	return false
}

// Refusal is why a peer was refused, for logs and metrics.
type Refusal struct {
	Reason string // a short stable word: no_certificate, bad_certificate, untrusted, expired, not_allowed
	Detail string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Detail }

// Peer is a verified peer.
type Peer struct {
	ID   spiffeid.ID // zero for a peer authorised by DNS name without one
	Leaf *x509.Certificate
}

// Name is how logs name the peer.
func (p Peer) Name() string {
	if !p.ID.IsZero() {
		return p.ID.String()
	}
	if len(p.Leaf.DNSNames) > 0 {
		return "dns:" + p.Leaf.DNSNames[0]
	}
	return p.Leaf.Subject.String()
}

// verifyPeer checks a peer's chain against the trust bundle of its trust
// domain (an X509-SVID's), or of any trust domain (a certificate with DNS
// names alone), and then the allow list.
func verifyPeer(id *Identity, authz Authorizer, certs []*x509.Certificate, usage x509.ExtKeyUsage, rev RevocationChecker) (Peer, error) {
	if len(certs) == 0 {
		return Peer{}, &Refusal{"no_certificate", "the peer presented no certificate"}
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	peerID, idErr := x509svid.IDFromCert(leaf)
	var pools []*x509.CertPool
	if idErr == nil {
		pool, ok := id.Roots[peerID.TrustDomain()]
		if !ok {
			return Peer{}, &Refusal{"untrusted", fmt.Sprintf("%s: no trust bundle for trust domain %s", peerID, peerID.TrustDomain())}
		}
		pools = []*x509.CertPool{pool}
	} else {
		if len(leaf.URIs) > 0 {
			return Peer{}, &Refusal{"bad_certificate", idErr.Error()}
		}
		for _, p := range id.Roots {
			pools = append(pools, p)
		}
	}
	var (
		verr   error
		chains [][]*x509.Certificate
	)
	for _, pool := range pools {
		if chains, verr = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); verr == nil {
			break
		}
	}
	if verr != nil {
		var inv x509.CertificateInvalidError
		if errors.As(verr, &inv) && inv.Reason == x509.Expired {
			return Peer{}, &Refusal{"expired", verr.Error()}
		}
		return Peer{}, &Refusal{"untrusted", verr.Error()}
	}
	peer := Peer{Leaf: leaf}
	if idErr == nil {
		peer.ID = peerID
	}
	if rev != nil {
		// Every chain that verified: a certificate revoked on any of
		// them (a cross-signed intermediate, say) is refused.
		for _, chain := range chains {
			if err := rev.Check(chain); err != nil {
				return peer, &Refusal{"revoked", fmt.Sprintf("%s: %v", peer.Name(), err)}
			}
		}
	}
	if !authz.allows(peer.ID, leaf.DNSNames) {
		return peer, &Refusal{"not_allowed", fmt.Sprintf("%s is not on the allow list", peer.Name())}
	}
	return peer, nil
}

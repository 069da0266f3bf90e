package policy

import (
	"net"
	"net/url"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// Lifetimes. MinTTL bounds every lifetime whatever a policy says; DefaultTTL
// and DefaultMaxTTL apply when a policy leaves DefaultTTL or MaxTTL unset.
const (
	MinTTL        = 5 * time.Minute
	DefaultTTL    = 24 * time.Hour
	DefaultMaxTTL = 7 * 24 * time.Hour
)

// DefaultIssuer is the issuer a policy with no Issuer names.
const DefaultIssuer = "default"

// Policy is the rule set of one provisioner. The zero value allows no names.
// The rule forms are described in the package documentation.
type Policy struct {
	AllowDNS   []string `json:"allow_dns,omitempty"` // "host", "*.domain" (one label down) or ".domain" (any depth)
	DenyDNS    []string `json:"deny_dns,omitempty"`
	AllowIP    []string `json:"allow_ip,omitempty"` // CIDRs or single addresses
	DenyIP     []string `json:"deny_ip,omitempty"`
	AllowURI   []string `json:"allow_uri,omitempty"` // exact URIs, or prefixes ending in "/" or "/*"
	DenyURI    []string `json:"deny_uri,omitempty"`
	AllowEmail []string `json:"allow_email,omitempty"` // "user@domain", or "@domain" for a whole domain
	DenyEmail  []string `json:"deny_email,omitempty"`
	// DefaultTTL is the lifetime when a request names none (0 means DefaultTTL).
	DefaultTTL Duration `json:"default_ttl,omitempty"`
	// MaxTTL caps requested lifetimes (0 means DefaultMaxTTL).
	MaxTTL Duration `json:"max_ttl,omitempty"`
	// KeyTypes lists the subject key types allowed (empty means all supported).
	KeyTypes []keys.KeyType `json:"key_types,omitempty"`
	// Issuer names the intermediate that signs for this provisioner ("" means "default").
	Issuer string `json:"issuer,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "24h0m0s".
type Duration time.Duration

// Names are the subject alternative names a request asks for. Build them
// with [ParseNames] from user input or [NamesFromCSR] from a request.
type Names struct {
	DNS    []string
	IPs    []net.IP
	URIs   []*url.URL
	Emails []string
}

// Request is what Evaluate decides on.
type Request struct {
	Names   Names
	TTL     time.Duration // 0 asks for the policy's default
	KeyType keys.KeyType  // "" skips the key type check
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Rule names the rule that decided, e.g. `deny_dns "*.prod.example.com"`,
	// `allow_dns "*.example.com"`, `max_ttl 168h0m0s`, or `default deny`.
	Rule string `json:"rule"`
	// Reason says why, in words a user can act on.
	Reason string `json:"reason"`
	// TTL is the lifetime to issue with, when allowed.
	TTL time.Duration `json:"-"`
}

// EffectiveDefaultTTL returns the lifetime for requests that name none:
// p.DefaultTTL, or when that is unset the package DefaultTTL lowered to the
// policy's max_ttl (a 4h max means a 4h default, not a refusal).
func (p Policy) EffectiveDefaultTTL() time.Duration {
	if p.DefaultTTL != 0 {
		return p.DefaultTTL.Std()
	}
	return min(DefaultTTL, p.EffectiveMaxTTL())
}

// EffectiveMaxTTL returns the longest lifetime the policy grants: p.MaxTTL,
// or DefaultMaxTTL when that is unset.
func (p Policy) EffectiveMaxTTL() time.Duration {
	if p.MaxTTL != 0 {
		return p.MaxTTL.Std()
	}
	return DefaultMaxTTL
}

// EffectiveIssuer returns the name of the intermediate that signs for the
// policy: p.Issuer, or "default" when that is empty.
func (p Policy) EffectiveIssuer() string {
	if p.Issuer != "" {
		return p.Issuer
	}
	return DefaultIssuer
}

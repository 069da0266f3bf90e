package validation

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// The challenge types a [Validator] checks.
const (
	ChallengeHTTP01    = "http-01"     // RFC 8555, section 8.3
	ChallengeDNS01     = "dns-01"      // RFC 8555, section 8.4
	ChallengeTLSALPN01 = "tls-alpn-01" // RFC 8737
)

// The identifier types a [Validator] checks.
const (
	IdentifierDNS = "dns" // RFC 8555, section 9.7.7
	IdentifierIP  = "ip"  // RFC 8738
)

// DefaultTimeout bounds one validation attempt when [Config.Timeout] is 0.
const DefaultTimeout = 10 * time.Second

// maxRedirects is how many redirects http-01 follows.
const maxRedirects = 10

// Config says where and how long a [Validator] looks.
type Config struct {
	// HTTPPort is the port http-01 fetches from, and the only port an http
	// redirect may lead to. 0 means 80; values outside 1-65535 also mean 80.
	HTTPPort int
	// TLSPort is the port tls-alpn-01 connects to, and the only port an
	// https redirect during http-01 may lead to. 0 means 443; values
	// outside 1-65535 also mean 443.
	TLSPort int
	// Resolver is the "host:port" of the DNS server asked for every lookup:
	// A and AAAA for http-01 and tls-alpn-01, TXT for dns-01, each name
	// fully qualified (no search domains, no hosts file). "" means resolve
	// as the system does: the hosts file and DNS in /etc/nsswitch.conf's
	// order, with /etc/resolv.conf's name servers and search domains, so
	// localhost and names in /etc/hosts validate.
	Resolver string
	// AllowRedirectTo lists networks an http-01 redirect may lead into
	// although they are loopback or private (see netpolicy.go); for a lab
	// or a test whose challenge servers sit there. Link-local addresses
	// are refused whatever it says.
	AllowRedirectTo []netip.Prefix
	// Timeout bounds one validation attempt, lookups included. 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Identifier is what a challenge proves control of (RFC 8555, section 7.1.3).
type Identifier struct {
	// Type is IdentifierDNS or IdentifierIP.
	Type string
	// Value is a DNS name without a trailing dot, or an IP address in its
	// textual form. A wildcard's "*." is stripped before dns-01.
	Value string
}

func (id Identifier) String() string { return id.Type + ":" + id.Value }

// Validator checks challenges. It is safe for concurrent use. Each
// validation dials fresh connections; none are kept or shared.
type Validator struct {
	httpPort int
	tlsPort  int
	timeout  time.Duration
	resolver *net.Resolver
	// absolute says names are looked up fully qualified (a Resolver was
	// configured); otherwise as the system would.
	absolute      bool
	redirectAllow []netip.Prefix
	dialer        *net.Dialer
	client        *http.Client
}

// New returns a Validator for cfg.
func New(cfg Config) *Validator {
	v := &Validator{
		httpPort: portOr(cfg.HTTPPort, 80),
		tlsPort:  portOr(cfg.TLSPort, 443),
		timeout:  cfg.Timeout,
		dialer:   &net.Dialer{},

		redirectAllow: cfg.AllowRedirectTo,
	}
	if v.timeout <= 0 {
		v.timeout = DefaultTimeout
	}
	v.resolver = &net.Resolver{PreferGo: true}
	if server := cfg.Resolver; server != "" {
		v.absolute = true
		v.resolver.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return v.dialer.DialContext(ctx, network, server)
		}
	}
	v.client = v.newHTTPClient()
	return v
}

func portOr(port, fallback int) int {
	if port <= 0 || port > 65535 {
		return fallback
	}
	return port
}

// Validate checks one challenge of challengeType (ChallengeHTTP01,
// ChallengeDNS01 or ChallengeTLSALPN01) for id. token is used by http-01
// only; keyAuthorization is the expected key authorization (RFC 8555,
// section 8.1).
//
// It returns nil if the challenge is met, and an [*Error] if it is not or
// cannot be checked. The attempt is bounded by [Config.Timeout]; if ctx
// ends first, Validate returns an error wrapping ctx.Err() that is not an
// *Error, since the attempt proved nothing either way.
func (v *Validator) Validate(ctx context.Context, challengeType string, id Identifier, token, keyAuthorization string) error {
	switch challengeType {
	case ChallengeHTTP01:
		return v.HTTP01(ctx, id, token, keyAuthorization)
	case ChallengeDNS01:
		return v.DNS01(ctx, id, keyAuthorization)
	case ChallengeTLSALPN01:
		return v.TLSALPN01(ctx, id, keyAuthorization)
	}
	return failf(TypeMalformed, nil, "unsupported challenge type %q", challengeType)
}

// Timeout is how long one validation attempt may take.
func (v *Validator) Timeout() time.Duration { return v.timeout }

// attempt runs check under the attempt timeout and turns the end of the
// caller's ctx into a non-*Error.
func (v *Validator) attempt(ctx context.Context, challengeType string, id Identifier, check func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("validation: %s for %s not attempted: %w", challengeType, id, err)
	}
	attemptCtx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	err := check(attemptCtx)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("validation: %s for %s abandoned: %w", challengeType, id, ctx.Err())
	}
	return err
}

package policy

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Each rule is parsed once into a form that matches without allocating, and
// keeps the texts a Decision shows, prepared once so that deciding allocates
// little.

// ruleText is how decisions refer to one rule.
type ruleText struct {
	// label is the Decision.Rule form: `deny_dns "*.prod.example.com"`.
	label string
	// phrase is the Reason form: `deny_dns rule "*.prod.example.com"`.
	phrase string
	// field is the rule's JSON field: "deny_dns".
	field string
}

func newRuleText(field, rule string) ruleText {
	quoted := strconv.Quote(rule)
	return ruleText{label: field + " " + quoted, phrase: field + " rule " + quoted, field: field}
}

// dnsKind is the form of a DNS rule.
type dnsKind uint8

const (
	dnsExact    dnsKind = iota // "api.example.com"
	dnsWildcard                // "*.example.com": one label under the base
	dnsSubtree                 // ".example.com": any depth under the base
)

type dnsRule struct {
	kind dnsKind
	// name is the whole lowercased name for dnsExact, and the suffix the
	// name must end in, starting with ".", for the other kinds.
	name string
	ruleText
}

func parseDNSRule(field, rule string) (dnsRule, string) {
	r := dnsRule{ruleText: newRuleText(field, rule)}
	lowered := strings.ToLower(rule)
	switch {
	case strings.HasPrefix(rule, "*."):
		r.kind, r.name = dnsWildcard, lowered[1:]
		if why := checkHostname(rule, true); why != "" {
			return r, why
		}
	case strings.HasPrefix(rule, "."):
		r.kind, r.name = dnsSubtree, lowered
		if why := checkHostname(rule[1:], false); why != "" {
			return r, why
		}
	default:
		r.kind, r.name = dnsExact, lowered
		if why := checkHostname(rule, false); why != "" {
			return r, why
		}
	}
	return r, ""
}

// matches reports whether the valid hostname name is covered by r, treating
// a requested wildcard as a literal name.
func (r *dnsRule) matches(name string) bool {
	switch r.kind {
	case dnsExact:
		return len(name) == len(r.name) && hasSuffixLower(name, r.name)
	case dnsWildcard:
		if len(name) <= len(r.name) || !hasSuffixLower(name, r.name) {
			return false
		}
		return strings.IndexByte(name[:len(name)-len(r.name)], '.') < 0
	default: // dnsSubtree
		return len(name) > len(r.name) && hasSuffixLower(name, r.name)
	}
}

// overlapsWildcard reports whether an exact rule names a host that the
// requested wildcard name ("*.example.com") would be valid for. The other
// kinds need no such check: a literal match already finds every overlap.
func (r *dnsRule) overlapsWildcard(name string) bool {
	if r.kind != dnsExact || !strings.HasPrefix(name, "*.") {
		return false
	}
	base := name[1:] // ".example.com"
	if len(r.name) <= len(base) || !equalFold(r.name[len(r.name)-len(base):], base) {
		return false
	}
	return strings.IndexByte(r.name[:len(r.name)-len(base)], '.') < 0
}

type ipRule struct {
	prefix netip.Prefix
	ruleText
}

func parseIPRule(field, rule string) (ipRule, string) {
	r := ipRule{ruleText: newRuleText(field, rule)}
	if strings.Contains(rule, "/") {
		p, err := netip.ParsePrefix(rule)
		if err != nil {
			return r, "not a CIDR prefix such as 10.0.0.0/8 or fd00::/8"
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.prefix = p.Masked()
		return r, ""
	}
	addr, err := netip.ParseAddr(rule)
	if err != nil {
		return r, "not an IP address or CIDR prefix"
	}
	if addr.Zone() != "" {
		return r, "an IPv6 zone is not allowed"
	}
	addr = addr.Unmap()
	r.prefix = netip.PrefixFrom(addr, addr.BitLen())
	return r, ""
}

// addrOf converts a requested IP, folding IPv4-mapped IPv6 to IPv4.
func addrOf(ip net.IP) (netip.Addr, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

type uriRule struct {
	scheme, host, opaque, path, query, fragment string
	prefix                                      bool
	ruleText
}

func parseURIRule(field, rule string) (uriRule, string) {
	r := uriRule{ruleText: newRuleText(field, rule)}
	text := rule
	if strings.HasSuffix(text, "/*") {
		text = strings.TrimSuffix(text, "*")
	}
	r.prefix = strings.HasSuffix(text, "/")
	u, err := url.Parse(text)
	if err != nil {
		return r, "does not parse as a URI"
	}
	if why := checkURI(u); why != "" {
		return r, why
	}
	if r.prefix {
		switch {
		case u.Opaque != "" || u.Host == "":
			return r, `a prefix rule needs the form "scheme://host/path/"`
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			return r, "a prefix rule cannot have a query or fragment"
		case !strings.HasSuffix(u.Path, "/"):
			return r, `a prefix rule's path must end in "/"`
		}
	}
	r.scheme = strings.ToLower(u.Scheme)
	r.host = strings.ToLower(u.Host)
	r.opaque, r.path, r.query, r.fragment = u.Opaque, u.Path, u.RawQuery, u.Fragment
	return r, ""
}

// matches reports whether the valid URI u is covered by r.
func (r *uriRule) matches(u *url.URL) bool {
	if !equalFold(u.Scheme, r.scheme) || !equalFold(u.Host, r.host) || u.Opaque != r.opaque {
		return false
	}
	if r.prefix {
		return strings.HasPrefix(u.Path, r.path)
	}
	return u.Path == r.path && u.RawQuery == r.query && u.Fragment == r.fragment
}

type emailRule struct {
	local  string // "" for a whole-domain rule
	domain string // lowercased
	ruleText
}

func parseEmailRule(field, rule string) (emailRule, string) {
	r := emailRule{ruleText: newRuleText(field, rule)}
	at := strings.LastIndexByte(rule, '@')
	if at < 0 {
		return r, `want "user@domain" or "@domain"`
	}
	if at > 0 {
		if why := checkLocalPart(rule[:at]); why != "" {
			return r, why
		}
	}
	if why := checkHostname(rule[at+1:], false); why != "" {
		return r, "domain: " + why
	}
	r.local, r.domain = rule[:at], strings.ToLower(rule[at+1:])
	return r, ""
}

// matches reports whether the valid address email is covered by r.
func (r *emailRule) matches(email string) bool {
	at := strings.LastIndexByte(email, '@')
	if !equalFold(email[at+1:], r.domain) {
		return false
	}
	return r.local == "" || email[:at] == r.local
}

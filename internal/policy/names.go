package policy

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// ParseNames sorts names as users type them on the command line into their
// SAN types: an IP address goes to IPs, anything containing "://" to URIs,
// anything containing "@" to Emails, and the rest to DNS. DNS names and email
// domains are lowercased, IPv4 addresses stored in their 4-byte form, URIs
// must name a host (as RFC 5280 requires of URIs with an authority),
// surrounding spaces trimmed and duplicates dropped. The error names the first
// entry that is not a valid name of its type.
func ParseNames(sans []string) (Names, error) {
	var n Names
	seen := make(map[string]bool, len(sans))
	for _, raw := range sans {
		s := strings.TrimSpace(raw)
		if s == "" {
			return Names{}, fmt.Errorf("policy: empty name in %q", sans)
		}
		if addr, err := netip.ParseAddr(s); err == nil {
			if addr.Zone() != "" {
				return Names{}, fmt.Errorf("policy: IP address %q: a zone is not allowed in a certificate", s)
			}
			addr = addr.Unmap()
			if key := "ip:" + addr.String(); !seen[key] {
				seen[key] = true
				n.IPs = append(n.IPs, net.IP(addr.AsSlice()))
			}
			continue
		}
		switch {
		case strings.Contains(s, "://"):
			u, err := url.Parse(s)
			if err != nil {
				return Names{}, fmt.Errorf("policy: URI %q does not parse: %w", s, err)
			}
			if why := checkURIName(u); why != "" {
				return Names{}, fmt.Errorf("policy: URI %q: %s", s, why)
			}
			if u.Host == "" {
				// RFC 5280, section 4.2.1.6: a URI with an authority
				// must name a host.
				return Names{}, fmt.Errorf("policy: URI %q: no host after \"://\"", s)
			}
			if key := "uri:" + u.String(); !seen[key] {
				seen[key] = true
				n.URIs = append(n.URIs, u)
			}
		case strings.Contains(s, "@"):
			if why := checkEmail(s); why != "" {
				return Names{}, fmt.Errorf("policy: email address %q: %s", s, why)
			}
			at := strings.LastIndexByte(s, '@')
			email := s[:at+1] + strings.ToLower(s[at+1:])
			if key := "email:" + email; !seen[key] {
				seen[key] = true
				n.Emails = append(n.Emails, email)
			}
		default:
			if why := checkNameHostname(s, true); why != "" {
				return Names{}, fmt.Errorf("policy: %q is not a valid DNS name: %s", s, why)
			}
			name := strings.ToLower(s)
			if key := "dns:" + name; !seen[key] {
				seen[key] = true
				n.DNS = append(n.DNS, name)
			}
		}
	}
	return n, nil
}

// NamesFromCSR returns copies of the subject alternative names in csr.
func NamesFromCSR(csr *x509.CertificateRequest) Names {
	var n Names
	if csr == nil {
		return n
	}
	if len(csr.DNSNames) > 0 {
		n.DNS = append([]string(nil), csr.DNSNames...)
	}
	for _, ip := range csr.IPAddresses {
		n.IPs = append(n.IPs, append(net.IP(nil), ip...))
	}
	for _, u := range csr.URIs {
		if u == nil {
			n.URIs = append(n.URIs, nil)
			continue
		}
		c := *u
		n.URIs = append(n.URIs, &c)
	}
	if len(csr.EmailAddresses) > 0 {
		n.Emails = append([]string(nil), csr.EmailAddresses...)
	}
	return n
}

// Len returns the number of names of all types.
func (n Names) Len() int {
	return len(n.DNS) + len(n.IPs) + len(n.URIs) + len(n.Emails)
}

// Strings returns every name as text: DNS names, then IP addresses in
// canonical form, then URIs, then email addresses. ParseNames reads the
// result back into the same names.
func (n Names) Strings() []string {
	out := make([]string, 0, n.Len())
	out = append(out, n.DNS...)
	for _, ip := range n.IPs {
		out = append(out, ipText(ip))
	}
	for _, u := range n.URIs {
		out = append(out, uriText(u))
	}
	return append(out, n.Emails...)
}

// Contains reports whether every name in m is also in n, and if not returns
// the first missing one as text. Names are compared literally (a "*.a.com"
// in n does not contain "x.a.com"), DNS names and email domains without
// regard to case, and URIs by scheme and host without regard to case and by
// the rest exactly.
func (n Names) Contains(m Names) (bool, string) {
	for _, want := range m.DNS {
		if !containsFunc(n.DNS, func(have string) bool { return equalFold(have, want) }) {
			return false, want
		}
	}
	for _, want := range m.IPs {
		if !containsFunc(n.IPs, func(have net.IP) bool { return len(want) > 0 && have.Equal(want) }) {
			return false, ipText(want)
		}
	}
	for _, want := range m.URIs {
		if !containsFunc(n.URIs, func(have *url.URL) bool { return uriEqual(have, want) }) {
			return false, uriText(want)
		}
	}
	for _, want := range m.Emails {
		if !containsFunc(n.Emails, func(have string) bool { return emailEqual(have, want) }) {
			return false, want
		}
	}
	return true, ""
}

func containsFunc[T any](s []T, f func(T) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// ipText formats ip canonically; addresses of a bad length are shown in hex.
func ipText(ip net.IP) string {
	if len(ip) == 0 {
		return "<empty IP address>"
	}
	return ip.String()
}

func uriText(u *url.URL) string {
	if u == nil {
		return "<nil URI>"
	}
	return u.String()
}

// uriEqual compares URIs by scheme and host without regard to case, and by
// everything else exactly. A nil URI equals nothing.
func uriEqual(a, b *url.URL) bool {
	if a == nil || b == nil {
		return false
	}
	return equalFold(a.Scheme, b.Scheme) && equalFold(a.Host, b.Host) &&
		a.Opaque == b.Opaque && a.Path == b.Path && a.RawQuery == b.RawQuery &&
		a.Fragment == b.Fragment && a.User.String() == b.User.String()
}

// emailEqual compares local parts exactly and domains without regard to case.
func emailEqual(a, b string) bool {
	ai, bi := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if ai < 0 || bi < 0 {
		return a == b
	}
	return a[:ai] == b[:bi] && equalFold(a[ai+1:], b[bi+1:])
}

// checkHostname returns why name is not a valid DNS name for a certificate,
// or "" when it is. With wildcard, a leading "*." label is allowed. It does
// not allocate for valid names.
func checkHostname(name string, wildcard bool) string {
	switch {
	case name == "":
		return "empty name"
	case len(name) > 253:
		return "longer than 253 characters"
	}
	if strings.HasPrefix(name, "*.") {
		if !wildcard {
			return `a wildcard "*." is not allowed here`
		}
		name = name[2:]
	}
	if name == "" {
		return "a wildcard needs a domain after \"*.\""
	}
	if name[len(name)-1] == '.' {
		return "a trailing dot is not allowed"
	}
	labelStart := 0
	allDigits := true
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			label := name[labelStart:i]
			switch {
			case label == "":
				return "empty label"
			case len(label) > 63:
				return "label longer than 63 characters"
			case label[0] == '-' || label[len(label)-1] == '-':
				return fmt.Sprintf("label %q starts or ends with a hyphen", label)
			}
			if i == len(name) && allDigits {
				return "the last label is all digits (IP addresses belong in the IP SANs)"
			}
			labelStart = i + 1
			allDigits = true
			continue
		}
		c := name[i]
		switch {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_':
			allDigits = false
		case c == '*':
			return `"*" is only allowed as the whole first label`
		default:
			return fmt.Sprintf("invalid character %q", rune(c))
		}
	}
	return ""
}

// checkNameHostname is checkHostname for a name a certificate would carry
// (not a rule). It also refuses what no certificate linter accepts in a
// dNSName: an underscore (RFC 5280, section 4.2.1.6, requires the preferred
// name syntax of RFC 1034, section 3.5: letters, digits and hyphens; zlint's
// e_rfc_dnsname_underscore_in_sld and _in_trd) and an "xn--" label that is
// not valid Punycode of a label in Unicode normalization form C (RFC 5891,
// RFC 8399; e_international_dns_name_not_unicode and _not_nfc). A rule may
// still hold an underscore; it just never matches a name.
func checkNameHostname(name string, wildcard bool) string {
	if why := checkHostname(name, wildcard); why != "" {
		return why
	}
	if strings.Contains(name, "_") {
		return `an underscore is not allowed in a DNS name in a certificate (RFC 5280 requires letters, digits and "-")`
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) < 4 || !equalFold(label[:4], "xn--") {
			continue
		}
		u, err := idna.Punycode.ToUnicode(strings.ToLower(label))
		if err != nil || !utf8.ValidString(u) {
			return fmt.Sprintf("label %q is not valid Punycode", label)
		}
		if !norm.NFC.IsNormalString(u) {
			return fmt.Sprintf("label %q is not in Unicode normalization form C", label)
		}
	}
	return ""
}

// checkEmail returns why s is not a simple "local@domain" address, or "".
// The local part must be an RFC 5322 dot-atom and the domain a hostname.
func checkEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return `no "@"`
	}
	local, domain := s[:at], s[at+1:]
	if why := checkLocalPart(local); why != "" {
		return why
	}
	if why := checkNameHostname(domain, false); why != "" {
		return "domain: " + why
	}
	return ""
}

func checkLocalPart(local string) string {
	switch {
	case local == "":
		return "empty local part"
	case len(local) > 64:
		return "local part longer than 64 characters"
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return "local part has a leading, trailing or doubled dot"
	}
	for i := 0; i < len(local); i++ {
		if !isAtext(local[i]) && local[i] != '.' {
			return fmt.Sprintf("invalid character %q in local part", rune(local[i]))
		}
	}
	return ""
}

// isAtext reports whether c may appear in an RFC 5322 atom.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkURI returns why u is not a URI name policy can match, or "".
func checkURI(u *url.URL) string {
	switch {
	case u == nil:
		return "missing URI"
	case u.Scheme == "":
		return "not an absolute URI (no scheme)"
	case u.Opaque == "" && u.Host == "" && u.Path == "":
		return "nothing after the scheme"
	case u.User != nil:
		return "user info is not allowed"
	case u.RawPath != "":
		return "the path is not in canonical percent-encoding"
	case hasDotSegment(u.Path):
		return `"." and ".." path segments are not allowed`
	}
	return ""
}

// checkURIName is checkURI for a URI a certificate would carry (not a
// rule). A spiffe:// URI must also have the shape of a SPIFFE ID (SPIFFE ID
// specification, section 2): no port, query or fragment, and a path of
// non-empty segments of letters, digits, ".", "-" and "_", with no trailing
// "/" — so that "spiffe://td/app/" or "spiffe://td/app//web" cannot pass a
// rule written for "spiffe://td/app/web" and reach relying parties that
// read them differently.
func checkURIName(u *url.URL) string {
	if why := checkURI(u); why != "" {
		return why
	}
	if !strings.EqualFold(u.Scheme, "spiffe") {
		return ""
	}
	switch {
	case u.Port() != "":
		return "a SPIFFE ID has no port"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "a SPIFFE ID has no query or fragment"
	case u.Path == "":
		return ""
	case strings.HasSuffix(u.Path, "/"):
		return "a SPIFFE ID path does not end with \"/\""
	}
	for seg := range strings.SplitSeq(u.Path[1:], "/") {
		if seg == "" {
			return "a SPIFFE ID path has no empty segments (\"//\")"
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Sprintf("a SPIFFE ID path holds only letters, digits, \".\", \"-\" and \"_\", not %q", c)
			}
		}
	}
	return ""
}

// hasDotSegment reports whether path has a "." or ".." segment.
func hasDotSegment(path string) bool {
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if seg := path[start:i]; seg == "." || seg == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}

// lower folds an ASCII letter to lower case.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// equalFold compares a and b with ASCII case folding only.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// hasSuffixLower reports whether s ends in suffix, folding s's ASCII case;
// suffix must already be lowercase.
func hasSuffixLower(s, suffix string) bool {
	if len(s) < len(suffix) {
		return false
	}
	s = s[len(s)-len(suffix):]
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != suffix[i] {
			return false
		}
	}
	return true
}

package validation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// checkIdentifier returns the address of an IP identifier, or the zero
// Addr for a DNS one, after checking id suits challengeType.
func checkIdentifier(challengeType string, id Identifier) (netip.Addr, error) {
	switch id.Type {
	case IdentifierDNS:
		if strings.HasPrefix(id.Value, "*.") {
			if challengeType == ChallengeDNS01 {
				return netip.Addr{}, failf(TypeMalformed, nil, "%s: wildcard %s must be validated at its base domain", challengeType, id.Value)
			}
			return netip.Addr{}, failf(TypeMalformed, nil, "%s: cannot validate wildcard %s; only dns-01 can", challengeType, id.Value)
		}
		if _, err := netip.ParseAddr(id.Value); err == nil {
			return netip.Addr{}, failf(TypeRejectedIdentifier, nil, "%s: dns identifier %q is an IP address", challengeType, id.Value)
		}
		if !isDNSName(id.Value) {
			return netip.Addr{}, failf(TypeRejectedIdentifier, nil, "%s: %q is not a valid DNS name", challengeType, id.Value)
		}
		return netip.Addr{}, nil
	case IdentifierIP:
		if challengeType == ChallengeDNS01 {
			return netip.Addr{}, failf(TypeMalformed, nil, "dns-01: cannot validate IP identifier %s (RFC 8738, section 7)", id.Value)
		}
		addr, err := netip.ParseAddr(id.Value)
		if err != nil || addr.Zone() != "" || addr.Is4In6() {
			return netip.Addr{}, failf(TypeRejectedIdentifier, nil, "%s: %q is not an IP address", challengeType, id.Value)
		}
		if !usableAddr(addr) {
			return netip.Addr{}, failf(TypeRejectedIdentifier, nil, "%s: %s is not a unicast address", challengeType, addr)
		}
		if classify(addr) == classLinkLocal {
			return netip.Addr{}, failf(TypeRejectedIdentifier, nil, "%s: %s is %s, which validation never connects to", challengeType, addr, classLinkLocal)
		}
		return addr, nil
	}
	return netip.Addr{}, failf(TypeUnsupportedIdentifier, nil, "%s: unsupported identifier type %q", challengeType, id.Type)
}

// isDNSName reports whether name is a DNS name of letters, digits and
// hyphens (RFC 1123, section 2.1), without a trailing dot.
func isDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// usableAddr reports whether addr can be connected to as a unicast host.
func usableAddr(addr netip.Addr) bool {
	return addr.IsValid() && !addr.IsUnspecified() && !addr.IsMulticast() &&
		addr != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// fqdn makes name absolute so the resolver applies no search domains.
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// lookupAddrs resolves name to its usable addresses, IPv4 (A) before
// IPv6 (AAAA). Failures are *hopError of TypeDNS.
func (v *Validator) lookupAddrs(ctx context.Context, name string) ([]netip.Addr, error) {
	lookup := name
	if v.absolute {
		lookup = fqdn(name)
	}
	found, err := v.resolver.LookupNetIP(ctx, "ip", lookup)
	if err != nil {
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			return nil, &hopError{TypeDNS, fmt.Sprintf("no A or AAAA record found for %s", name), err}
		case isTimeout(err):
			return nil, &hopError{TypeDNS, fmt.Sprintf("looking up A and AAAA for %s: timed out after %s", name, v.timeout), err}
		case errors.As(err, &de):
			return nil, &hopError{TypeDNS, fmt.Sprintf("looking up A and AAAA for %s: %s", name, describeDNSErr(de)), err}
		}
		return nil, &hopError{TypeDNS, fmt.Sprintf("looking up A and AAAA for %s: %v", name, err), err}
	}
	var v4, v6 []netip.Addr
	for _, addr := range found {
		addr = addr.Unmap()
		switch {
		case !usableAddr(addr):
		case addr.Is4():
			v4 = append(v4, addr)
		default:
			v6 = append(v6, addr.WithZone(""))
		}
	}
	addrs := append(v4, v6...)
	if len(addrs) == 0 {
		if len(found) > 0 {
			return nil, &hopError{TypeDNS, fmt.Sprintf("%s resolves only to unusable addresses such as %s", name, found[0]), nil}
		}
		return nil, &hopError{TypeDNS, fmt.Sprintf("no A or AAAA record found for %s", name), nil}
	}
	return addrs, nil
}

// dial connects over TCP to host (a DNS name or an IP literal) on port,
// trying each address of a name in turn. Failures are *hopError.
func (v *Validator) dial(ctx context.Context, host string, port int) (net.Conn, error) {
	var addrs []netip.Addr
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" || !usableAddr(addr.Unmap()) {
			return nil, &hopError{TypeConnection, fmt.Sprintf("%s is not a usable unicast address", host), nil}
		}
		addrs = []netip.Addr{addr.Unmap()}
	} else {
		if !isDNSName(strings.TrimSuffix(host, ".")) {
			return nil, &hopError{TypeConnection, fmt.Sprintf("%q is not a valid host name", host), nil}
		}
		if addrs, err = v.lookupAddrs(ctx, host); err != nil {
			return nil, err
		}
	}
	var (
		firstErr    error
		firstTarget string
		tried       int
		refused     string
	)
	for _, addr := range addrs {
		if ok, why := v.allowed(ctx, addr); !ok {
			if refused == "" {
				refused = why
			}
			continue
		}
		target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
		conn, err := v.dialer.DialContext(ctx, "tcp", target)
		if err == nil {
			fetchStateOf(ctx).connected(addr)
			return conn, nil
		}
		tried++
		if firstErr == nil {
			firstErr, firstTarget = err, target
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		return nil, &hopError{TypeConnection, refused, nil}
	}
	msg := fmt.Sprintf("connecting to %s: %s", firstTarget, describeNetErr(firstErr, v.timeout))
	if tried > 1 {
		msg += fmt.Sprintf(" (%d other addresses failed too)", tried-1)
	}
	return nil, &hopError{TypeConnection, msg, firstErr}
}

// reverseName is the reverse-DNS name of addr (RFC 8738, section 6), such
// as "4.3.2.1.in-addr.arpa" for 1.2.3.4.
func reverseName(addr netip.Addr) string {
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		for i := len(a) - 1; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa")
		return b.String()
	}
	const hexDigits = "0123456789abcdef"
	a := addr.As16()
	for i := len(a) - 1; i >= 0; i-- {
		b.WriteByte(hexDigits[a[i]&0x0f])
		b.WriteByte('.')
		b.WriteByte(hexDigits[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa")
	return b.String()
}

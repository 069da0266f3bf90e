// Package netguard owns where the CA's own network requests may go. The
// server connects out on its own — ACME validation, scheduled scans, alert
// webhooks and mail — and each of those is a way into the network it sits in
// (server-side request forgery), so every such connection is checked
// against the class of the address it actually reaches, after DNS, at
// connect time.
package netguard

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Class is the kind of network an address belongs to.
type Class int

// The address classes, from least to most sensitive.
const (
	Public    Class = iota
	Private         // RFC 1918, RFC 6598 shared space, fc00::/7
	Loopback        // 127.0.0.0/8, ::1, and the unspecified address, which reaches the host itself
	LinkLocal       // 169.254.0.0/16, fe80::/10, where cloud metadata services live, and multicast
)

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10")     // RFC 6598
	awsMetadata = netip.MustParsePrefix("fd00:ec2::254/128") // AWS IPv6 metadata
)

// Classify returns addr's class.
func Classify(addr netip.Addr) Class {
	addr = addr.Unmap()
	switch {
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsMulticast() || awsMetadata.Contains(addr):
		return LinkLocal
	case addr.IsLoopback() || addr.IsUnspecified():
		return Loopback
	case addr.IsPrivate() || sharedSpace.Contains(addr):
		return Private
	}
	return Public
}

func (c Class) String() string {
	switch c {
	case Private:
		return "a private address"
	case Loopback:
		return "a loopback address"
	case LinkLocal:
		return "a link-local address"
	}
	return "a public address"
}

// Guard refuses connections to loopback and link-local addresses (cloud
// metadata among them) unless Allow names their network. Public and private
// addresses are allowed: scanning and alerting inside one's own network is
// the point.
type Guard struct {
	// Allow are networks connected to whatever their class, e.g.
	// 127.0.0.0/8 for a receiver on the CA's own host.
	Allow []netip.Prefix
}

// RefusedError is the error of a connection the guard refused.
type RefusedError struct {
	Addr  netip.Addr
	Class Class
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s is %s, which the server does not connect to unless allowed", e.Addr, e.Class)
}

// Check returns a *RefusedError when addr may not be connected to.
func (g Guard) Check(addr netip.Addr) error {
	addr = addr.Unmap()
	class := Classify(addr)
	if class == Public || class == Private {
		return nil
	}
	for _, p := range g.Allow {
		if p.Contains(addr) {
			return nil
		}
	}
	return &RefusedError{Addr: addr, Class: class}
}

// Control is a net.Dialer Control function that applies the guard to the
// address being connected to.
func (g Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("netguard: %q: %w", address, err)
	}
	return g.Check(ap.Addr())
}

// Dialer is a net.Dialer that applies the guard.
func (g Guard) Dialer() *net.Dialer {
	return &net.Dialer{Control: g.Control}
}

// ParsePrefixes reads networks given as CIDRs or single addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network (CIDR) or an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

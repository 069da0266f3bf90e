package validation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// The RFC 8555 (section 6.7) problem types an [Error] carries, without the
// "urn:ietf:params:acme:error:" prefix.
const (
	// TypeConnection: the server could not reach the identifier's host, or
	// the host stopped answering, or a redirect led somewhere not allowed.
	TypeConnection = "connection"
	// TypeDNS: a DNS lookup failed or found no usable address.
	TypeDNS = "dns"
	// TypeUnauthorized: the host answered, but not with a response to this
	// challenge (an HTTP error status, no TXT record, no acme-tls/1, a
	// certificate for other names or without the acmeIdentifier extension).
	TypeUnauthorized = "unauthorized"
	// TypeIncorrectResponse: the host answered the challenge, but with the
	// wrong key authorization.
	TypeIncorrectResponse = "incorrectResponse"
	// TypeTLS: the TLS handshake failed.
	TypeTLS = "tls"
	// TypeMalformed: the caller's input cannot be validated (a bad token,
	// an unknown challenge type, an identifier unsuitable for the challenge).
	TypeMalformed = "malformed"
	// TypeRejectedIdentifier: the identifier's value is not a usable DNS
	// name or IP address.
	TypeRejectedIdentifier = "rejectedIdentifier"
	// TypeUnsupportedIdentifier: the identifier's type is neither "dns"
	// nor "ip".
	TypeUnsupportedIdentifier = "unsupportedIdentifier"
)

// Error is a failed validation: the identifier's owner did not prove
// control, or the challenge could not be checked at all.
type Error struct {
	// Type is the RFC 8555 problem type suffix, one of the Type constants.
	Type string
	// Detail is one sentence for the ACME client, starting with the
	// challenge type, e.g. "http-01: fetching http://a.test/...: got status 404".
	Detail string

	err error // the underlying network or parse error, if any
}

func (e *Error) Error() string { return "validation: " + e.Type + ": " + e.Detail }

// Unwrap returns the network or parse error behind e, if any.
func (e *Error) Unwrap() error { return e.err }

func failf(typ string, cause error, format string, args ...any) *Error {
	return &Error{Type: typ, Detail: fmt.Sprintf(format, args...), err: cause}
}

// hopError is a failure reaching one host — resolving, dialing or
// handshaking — before the challenge prefixes it with what it was doing.
type hopError struct {
	typ string
	msg string
	err error
}

func (e *hopError) Error() string { return e.msg }
func (e *hopError) Unwrap() error { return e.err }

// isTimeout reports whether err is a deadline expiring.
// describeDNSErr says why a lookup failed, in words for a client.
func describeDNSErr(de *net.DNSError) string {
	if de.Err == "server misbehaving" { // Go's wording for SERVFAIL, REFUSED and bad replies
		return "the DNS server failed to answer (SERVFAIL, REFUSED or a malformed reply)"
	}
	return de.Err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// describeNetErr says in a few words why a connection failed, without the
// Go-specific "dial tcp ...: " noise.
func describeNetErr(err error, timeout time.Duration) string {
	switch {
	case isTimeout(err):
		return fmt.Sprintf("timed out after %s", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE):
		return "connection closed"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		if oe.Op == "remote error" { // a TLS alert from the peer
			return "remote error: " + oe.Err.Error()
		}
		return oe.Err.Error()
	}
	return err.Error()
}

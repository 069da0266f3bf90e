package validation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ACMETLS1Protocol is the ALPN protocol of tls-alpn-01 (RFC 8737, section 6.2).
const ACMETLS1Protocol = "acme-tls/1"

var (
	// oidACMEIdentifier is id-pe-acmeIdentifier (RFC 8737, section 6.1).
	oidACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}
	// oidSubjectAltName is id-ce-subjectAltName (RFC 5280, section 4.2.1.6).
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// The GeneralName tags of RFC 5280, section 4.2.1.6.
const (
	tagDNSName   = 2
	tagIPAddress = 7
)

// TLSALPN01 checks a tls-alpn-01 challenge (RFC 8737; RFC 8738, section 6
// for IP identifiers): a TLS handshake with <id>:<TLSPort> offering only
// acme-tls/1, with the domain (or for an IP, its reverse-DNS name) as SNI,
// must negotiate acme-tls/1 and present exactly one certificate naming
// only id and carrying the critical acmeIdentifier extension with the
// SHA-256 digest of keyAuthorization. The certificate is not otherwise
// verified. Errors are as for [Validator.Validate].
func (v *Validator) TLSALPN01(ctx context.Context, id Identifier, keyAuthorization string) error {
	return v.attempt(ctx, ChallengeTLSALPN01, id, func(ctx context.Context) error {
		return v.tlsALPN01(ctx, id, keyAuthorization)
	})
}

func (v *Validator) tlsALPN01(ctx context.Context, id Identifier, keyAuthorization string) error {
	ip, err := checkIdentifier(ChallengeTLSALPN01, id)
	if err != nil {
		return err
	}
	host, sni := id.Value, id.Value
	if ip.IsValid() {
		host, sni = ip.String(), reverseName(ip)
	}
	conn, err := v.dial(ctx, host, v.tlsPort)
	if err != nil {
		var herr *hopError
		if errors.As(err, &herr) {
			return failf(herr.typ, err, "tls-alpn-01: %s", herr.msg)
		}
		return failf(TypeConnection, err, "tls-alpn-01: connecting to %s: %v", host, err)
	}
	defer conn.Close()
	where := fmt.Sprintf("%s (SNI %s)", conn.RemoteAddr(), sni)

	tlsConn := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		NextProtos:         []string{ACMETLS1Protocol},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the certificate is checked below, against the challenge
	})
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		typ := TypeTLS
		if isTimeout(err) {
			typ = TypeConnection
		}
		return failf(typ, err, "tls-alpn-01: TLS handshake with %s: %s", where, describeNetErr(err, v.timeout))
	}
	state := tlsConn.ConnectionState()
	if state.NegotiatedProtocol != ACMETLS1Protocol {
		return failf(TypeUnauthorized, nil, "tls-alpn-01: %s did not negotiate the %s protocol", where, ACMETLS1Protocol)
	}
	if n := len(state.PeerCertificates); n != 1 {
		return failf(TypeUnauthorized, nil, "tls-alpn-01: %s presented %d certificates, not exactly one", where, n)
	}
	if err := checkChallengeCert(state.PeerCertificates[0], id, ip, keyAuthorization); err != nil {
		err.Detail = fmt.Sprintf("tls-alpn-01: the certificate from %s %s", where, err.Detail)
		return err
	}
	return nil
}

// checkChallengeCert checks cert is the tls-alpn-01 certificate for id
// and keyAuthorization. ip is id's address if id is an IP identifier.
// The returned Detail continues "the certificate from <host> ...".
func checkChallengeCert(cert *x509.Certificate, id Identifier, ip netip.Addr, keyAuthorization string) *Error {
	san, err := onlyExtension(cert, oidSubjectAltName)
	if err != nil {
		return failf(TypeUnauthorized, nil, "%s subjectAltName extension", err)
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(san.Value, &names); err != nil || len(rest) != 0 {
		return failf(TypeUnauthorized, err, "has a malformed subjectAltName extension")
	}
	if len(names) != 1 || !namesIdentifier(names[0], id, ip) {
		return failf(TypeUnauthorized, nil, "names %s; it must name only %s", describeNames(cert, len(names)), describeIdentifier(id))
	}

	ext, err := onlyExtension(cert, oidACMEIdentifier)
	if err != nil {
		return failf(TypeUnauthorized, nil, "%s acmeIdentifier extension (%s)", err, oidACMEIdentifier)
	}
	if !ext.Critical {
		return failf(TypeUnauthorized, nil, "has an acmeIdentifier extension not marked critical")
	}
	var digest []byte
	if rest, err := asn1.Unmarshal(ext.Value, &digest); err != nil || len(rest) != 0 || len(digest) != sha256.Size {
		return failf(TypeIncorrectResponse, err, "has an acmeIdentifier extension that is not an OCTET STRING of %d bytes", sha256.Size)
	}
	want := sha256.Sum256([]byte(keyAuthorization))
	if subtle.ConstantTimeCompare(digest, want[:]) != 1 {
		return failf(TypeIncorrectResponse, nil, "has an acmeIdentifier extension that is not the SHA-256 digest of the key authorization")
	}
	return nil
}

var (
	errNoExtension        = errors.New("lacks the")
	errDuplicateExtension = errors.New("has more than one")
)

// onlyExtension returns cert's one extension with oid. Its errors read
// "lacks the" / "has more than one", for the caller to finish.
func onlyExtension(cert *x509.Certificate, oid asn1.ObjectIdentifier) (found *pkix.Extension, err error) {
	for i := range cert.Extensions {
		if !cert.Extensions[i].Id.Equal(oid) {
			continue
		}
		if found != nil {
			return nil, errDuplicateExtension
		}
		found = &cert.Extensions[i]
	}
	if found == nil {
		return nil, errNoExtension
	}
	return found, nil
}

// namesIdentifier reports whether the GeneralName name is exactly id: a
// dNSName equal to a DNS identifier ignoring ASCII case, or an iPAddress
// equal to an IP identifier.
func namesIdentifier(name asn1.RawValue, id Identifier, ip netip.Addr) bool {
	if name.Class != asn1.ClassContextSpecific || name.IsCompound {
		return false
	}
	switch {
	case id.Type == IdentifierDNS && name.Tag == tagDNSName:
		return equalFoldASCII(name.Bytes, id.Value)
	case id.Type == IdentifierIP && name.Tag == tagIPAddress && ip.IsValid():
		return bytes.Equal(name.Bytes, ip.AsSlice())
	}
	return false
}

// equalFoldASCII compares an IA5String to s ignoring ASCII case only, so
// that no Unicode folding (such as the Kelvin sign to "k") can match.
func equalFoldASCII(ia5 []byte, s string) bool {
	if len(ia5) != len(s) {
		return false
	}
	for i := range ia5 {
		a, b := ia5[i], s[i]
		if a >= 0x80 || b >= 0x80 {
			return false
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// describeIdentifier writes id as a subjectAltName entry would appear.
func describeIdentifier(id Identifier) string {
	if id.Type == IdentifierIP {
		return "IP:" + id.Value
	}
	return "DNS:" + id.Value
}

// describeNames lists the names in cert's subjectAltName for a detail.
func describeNames(cert *x509.Certificate, count int) string {
	var listed []string
	for _, name := range cert.DNSNames {
		listed = append(listed, "DNS:"+name)
	}
	for _, ip := range cert.IPAddresses {
		listed = append(listed, "IP:"+ip.String())
	}
	for _, email := range cert.EmailAddresses {
		listed = append(listed, "email:"+email)
	}
	for _, u := range cert.URIs {
		listed = append(listed, "URI:"+u.String())
	}
	if len(listed) > 5 {
		listed = listed[:5]
	}
	for i := range listed {
		listed[i] = clip(listed[i], 64)
	}
	if count == 0 {
		return "nothing"
	}
	text := strings.Join(listed, ", ")
	if extra := count - len(listed); extra > 0 {
		if text != "" {
			text += " and "
		}
		text += fmt.Sprintf("%d other name", extra)
		if extra > 1 {
			text += "s"
		}
	}
	return text
}

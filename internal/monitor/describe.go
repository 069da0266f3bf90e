package monitor

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// CertInfo describes one certificate of a chain, as scan --json prints it.
type CertInfo struct {
	Subject            string    `json:"subject"`
	SANs               []string  `json:"sans"`
	Serial             string    `json:"serial"`
	Issuer             string    `json:"issuer"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	FingerprintSHA256  string    `json:"fingerprint_sha256"`
	KeyType            string    `json:"key_type"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
}

// Describe returns cert's CertInfo.
func Describe(cert *x509.Certificate) CertInfo {
	return CertInfo{
		Subject:            cert.Subject.String(),
		SANs:               Names(cert),
		Serial:             cert.SerialNumber.Text(16),
		Issuer:             cert.Issuer.String(),
		NotBefore:          cert.NotBefore.UTC(),
		NotAfter:           cert.NotAfter.UTC(),
		FingerprintSHA256:  Fingerprint(cert),
		KeyType:            KeyTypeName(cert),
		SignatureAlgorithm: cert.SignatureAlgorithm.String(),
	}
}

// Names lists every subject alternative name of cert as text: DNS names,
// IP addresses, URIs, then e-mail addresses.
func Names(cert *x509.Certificate) []string {
	names := make([]string, 0, len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.URIs)+len(cert.EmailAddresses))
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	return append(names, cert.EmailAddresses...)
}

// Fingerprint is the SHA-256 of cert's DER as upper-case hex pairs
// separated by colons, as openssl x509 -fingerprint -sha256 prints it.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return ColonHex(sum[:])
}

// ColonHex writes b as upper-case hex pairs separated by colons.
func ColonHex(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 3*len(b))
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&0x0f])
	}
	return string(out)
}

// KeyTypeName names cert's public key as meshpki names key types
// ("ec-p256", "rsa-2048", "ed25519"), or describes one meshpki does not
// issue ("RSA 1024-bit (unsupported)").
func KeyTypeName(cert *x509.Certificate) string {
	if kt, err := keys.TypeOf(cert.PublicKey); err == nil {
		return string(kt)
	}
	return keyDescription(cert) + " (unsupported)"
}

// keyDescription names cert's key algorithm and size.
func keyDescription(cert *x509.Certificate) string {
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", pub.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ECDSA %s", pub.Curve.Params().Name)
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return cert.PublicKeyAlgorithm.String()
}

// CommonName is the CN of a distinguished name as Go prints one
// ("CN=web,O=Example"), or "".
func CommonName(dn string) string {
	for _, part := range strings.Split(dn, ",") {
		if v, ok := strings.CutPrefix(part, "CN="); ok {
			return v
		}
	}
	return ""
}

package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/meshpki/meshpki/internal/store"
	"time"
	"unicode/utf8"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
)

// maxCommonNameLength is ub-common-name from RFC 5280, appendix A.1, in
// characters.
const maxCommonNameLength = 64

// caBackdate is how far CA certificates' NotBefore lies in the past, to
// absorb clock skew between the CA and relying parties.
const caBackdate = time.Minute

// LeafRequest is what the issuance path asks an Issuer to sign, after policy
// has decided the names and the lifetime. SignLeaf copies nothing else into
// the certificate.
type LeafRequest struct {
	// Subject is the subject common name. It may be empty, and it is left
	// out when longer than 64 characters; the names in Names are what
	// relying parties check.
	Subject string
	// Names become the subjectAltName extension.
	Names policy.Names
	// PublicKey is the subject's public key: *ecdsa.PublicKey,
	// ed25519.PublicKey or *rsa.PublicKey of a type keys.TypeOf accepts.
	PublicKey crypto.PublicKey
	// NotBefore and NotAfter bound the validity. NotAfter is capped at the
	// issuer's NotAfter.
	NotBefore, NotAfter time.Time
	// Pointers are the revocation URLs the leaf carries; empty ones are
	// left out.
	Pointers Pointers
}

// Pointers are where relying parties learn whether a leaf is revoked:
// RFC 5280's cRLDistributionPoints (section 4.2.1.13, one distribution
// point with a fullName URI) and authorityInfoAccess (section 4.2.2.1,
// id-ad-ocsp and id-ad-caIssuers URIs).
type Pointers struct {
	CRL       string
	OCSP      string
	CAIssuers string
}

// NewSerial returns a positive, non-zero serial number of 128 random bits
// (RFC 5280, section 4.1.2.2: at most 20 octets).
func NewSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ca: serial number: %w", err)
		}
		n := new(big.Int).SetBytes(b[:])
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// ParseSerial reads a serial as people paste it — upper or lower case,
// with colons, a 0x prefix or leading zeros — and returns it as recorded
// (store.Serial). It is the one parser the API, the CLI and the Authority use.
func ParseSerial(s string) (store.Serial, error) {
	serial := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	serial = strings.TrimLeft(strings.TrimPrefix(serial, "0x"), "0")
	switch {
	case serial == "":
		return "", fmt.Errorf("serial %q is empty or zero", Clip(s))
	case len(serial) > 40: // RFC 5280, section 4.1.2.2: at most 20 octets
		return "", fmt.Errorf("serial %q is longer than 20 octets", Clip(s))
	}
	for _, c := range serial {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("serial %q is not hexadecimal", Clip(s))
		}
	}
	return store.Serial(serial), nil
}

// SignLeaf signs an end-entity certificate for req with the issuer's key:
// a random serial, basicConstraints CA:FALSE, keyUsage digitalSignature (and
// keyEncipherment for an RSA subject key), extKeyUsage serverAuth and
// clientAuth, subject and authority key identifiers, and req.Names as
// subjectAltName (critical when the subject is empty). It is safe for
// concurrent use.
func (iss *Issuer) SignLeaf(req LeafRequest) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl, err := iss.leafTemplate(req, serial)
	if err != nil {
		return nil, err
	}
	der, err := iss.createLeaf(tmpl, req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf with %s: %w", iss.label(), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf: parse result: %w", err)
	}
	return cert, nil
}

// leafTemplate checks req and builds the template SignLeaf signs, with the
// given serial. createLeaf's fast path encodes exactly the fields set here
// (see fastPathTemplate); a new field needs it there too.
func (iss *Issuer) leafTemplate(req LeafRequest, serial *big.Int) (*x509.Certificate, error) {
	if req.PublicKey == nil {
		return nil, errors.New("ca: sign leaf: no public key")
	}
	kt, err := keys.TypeOf(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf: %w", err)
	}
	n := req.Names
	if len(n.DNS)+len(n.IPs)+len(n.URIs)+len(n.Emails) == 0 && req.Subject == "" {
		return nil, errors.New("ca: sign leaf: no names and no subject")
	}
	notAfter := req.NotAfter
	if notAfter.After(iss.Cert.NotAfter) {
		notAfter = iss.Cert.NotAfter
	}
	if !notAfter.After(req.NotBefore) {
		return nil, fmt.Errorf("ca: sign leaf: validity ends (%s) before it starts (%s); issuer %s expires %s",
			notAfter.UTC().Format(time.RFC3339), req.NotBefore.UTC().Format(time.RFC3339),
			iss.label(), iss.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	skid, err := subjectKeyID(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: sign leaf: %w", err)
	}
	usage := x509.KeyUsageDigitalSignature
	if kt == keys.RSA2048 || kt == keys.RSA3072 || kt == keys.RSA4096 {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             req.NotBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		DNSNames:              n.DNS,
		IPAddresses:           n.IPs,
		URIs:                  n.URIs,
		EmailAddresses:        n.Emails,
	}
	if p := req.Pointers; p.CRL != "" {
		tmpl.CRLDistributionPoints = []string{p.CRL}
	}
	if p := req.Pointers; p.OCSP != "" {
		tmpl.OCSPServer = []string{p.OCSP}
	}
	if p := req.Pointers; p.CAIssuers != "" {
		tmpl.IssuingCertificateURL = []string{p.CAIssuers}
	}
	if req.Subject != "" && utf8.RuneCountInString(req.Subject) <= maxCommonNameLength {
		tmpl.Subject = pkix.Name{CommonName: req.Subject}
	}
	if tmpl.Subject.CommonName == "" && len(n.DNS)+len(n.IPs)+len(n.URIs)+len(n.Emails) == 0 {
		return nil, fmt.Errorf("ca: sign leaf: subject %q is longer than %d characters and there are no names", req.Subject, maxCommonNameLength)
	}
	return tmpl, nil
}

// Chain returns the certificates a client sends after its leaf: the issuer's
// own certificate (the root is not sent).
func (iss *Issuer) Chain() []*x509.Certificate {
	return []*x509.Certificate{iss.Cert}
}

func (iss *Issuer) label() string {
	return fmt.Sprintf("issuer %q generation %d", iss.Name, iss.Generation)
}

// subjectKeyID computes a key identifier by RFC 7093, section 2, method 1:
// the leftmost 160 bits of the SHA-256 hash of the subjectPublicKey BIT
// STRING value, the same method crypto/x509 uses for CA certificates.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var raw []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
		raw = b
	case ed25519.PublicKey:
		raw = k
	case *rsa.PublicKey:
		raw = x509.MarshalPKCS1PublicKey(k)
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
		raw = spki.PublicKey.Bytes
	}
	sum := sha256.Sum256(raw)
	return sum[:20], nil
}

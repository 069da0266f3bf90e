package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshpki/meshpki/internal/store"
)

// The DER of a CRL (RFC 5280, section 5) is written here by hand rather
// than through x509.CreateRevocationList, whose reflection-based encoding
// of a million entries takes seconds: each entry is appended to one buffer
// with the few bytes it needs, and the buffer is wrapped and signed once.

var (
	oidCRLNumber     = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidIssuingDistPt = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidAuthorityKey  = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// crlSpec is one CRL to encode.
type crlSpec struct {
	issuer     *x509.Certificate
	signer     crypto.Signer
	number     int64
	thisUpdate time.Time
	nextUpdate time.Time
	// distributionPoint, when set, makes the CRL a partition: an Issuing
	// Distribution Point (critical) names it, with onlyContainsUserCerts
	// when userOnly.
	distributionPoint string
	userOnly          bool
}

// crlEntries accumulates revokedCertificates entries, encoded, in chunks
// that are never copied as they grow: a CRL of a million entries is some
// 47 MB, and a slice doubling to that size copies it over again.
type crlEntries struct {
	chunks [][]byte
	size   int // bytes in all chunks
	count  int
}

// crlChunk is the size of one chunk of encoded entries.
const crlChunk = 1 << 20

// join appends the entries of others to e (sharing their chunks).
func (e *crlEntries) join(others ...*crlEntries) {
	for _, o := range others {
		e.chunks = append(e.chunks, o.chunks...)
		e.size += o.size
		e.count += o.count
	}
}

// add appends one entry: the serial (lowercase hex, as the store keeps
// it), the revocation date, and the reasonCode extension unless the
// reason is unspecified (RFC 5280, section 5.3.1: absent rather than 0).
func (e *crlEntries) add(r store.RevokedEntry) error {
	serial, err := serialDER(string(r.Serial))
	if err != nil {
		return err
	}
	var tm [17]byte
	t := appendCRLTime(tm[:0], r.RevokedAt)
	body := 2 + len(serial) + len(t)
	if r.Reason != 0 {
		body += 14
	}
	if len(e.chunks) == 0 || cap(e.chunks[len(e.chunks)-1])-len(e.chunks[len(e.chunks)-1]) < body+4 {
		e.chunks = append(e.chunks, make([]byte, 0, crlChunk))
	}
	buf := e.chunks[len(e.chunks)-1]
	before := len(buf)
	buf = append(buf, 0x30)
	buf = appendLength(buf, body)
	buf = append(buf, 0x02)
	buf = appendLength(buf, len(serial))
	buf = append(buf, serial...)
	buf = append(buf, t...) // the tag and length are in t
	if r.Reason != 0 {
		// Extensions ::= SEQUENCE { Extension { 2.5.29.21, OCTET STRING { ENUMERATED reason } } }
		buf = append(buf, 0x30, 12, 0x30, 10, 0x06, 3, 85, 29, 21, 0x04, 3, 0x0a, 1, byte(r.Reason))
	}
	e.chunks[len(e.chunks)-1] = buf
	e.size += len(buf) - before
	e.count++
	return nil
}

// serialDER is the content octets of the INTEGER of a positive serial in
// hexadecimal: big-endian, no leading zero octets but the one that keeps
// the first octet from reading as negative.
func serialDER(hex string) ([]byte, error) {
	if hex == "" || len(hex) > 40 {
		return nil, fmt.Errorf("serial %q cannot be on a CRL", hex)
	}
	var buf [21]byte
	n := (len(hex) + 1) / 2
	digits := buf[1 : 1+n]
	odd := len(hex) % 2
	for i := 0; i < len(hex); i++ {
		v, ok := hexValue(hex[i])
		if !ok {
			return nil, fmt.Errorf("serial %q is not hexadecimal", hex)
		}
		j := i + odd // position counting a leading zero nibble when odd
		if j%2 == 0 {
			digits[j/2] |= v << 4
		} else {
			digits[j/2] |= v
		}
	}
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return nil, errors.New("serial 0 cannot be on a CRL")
	}
	if digits[0]&0x80 != 0 {
		return buf[1+n-len(digits)-1 : 1+n], nil // with the zero octet before
	}
	return digits, nil
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendLength appends a DER length.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendCRLTime appends t in UTC to the second as a DER Time: UTCTime for
// 1950 to 2049, GeneralizedTime otherwise (RFC 5280, section 5.1.2.4).
func appendCRLTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y := t.Year()
	two := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	if y >= 1950 && y < 2050 {
		b = append(b, 0x17, 13)
		b = two(b, y%100)
	} else {
		b = append(b, 0x18, 15)
		b = two(b, y/100%100)
		b = two(b, y%100)
	}
	b = two(b, int(t.Month()))
	b = two(b, t.Day())
	b = two(b, t.Hour())
	b = two(b, t.Minute())
	b = two(b, t.Second())
	return append(b, 'Z')
}

// signatureFor returns the DER AlgorithmIdentifier and the options to sign
// with pub's key, as crypto/x509 picks them for a certificate.
func signatureFor(pub crypto.PublicKey) ([]byte, crypto.SignerOpts, error) {
	b := cryptobyte.NewBuilder(nil)
	var opts crypto.SignerOpts
	var oid asn1.ObjectIdentifier
	withNull := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			oid, opts = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256
		case elliptic.P384():
			oid, opts = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384
		case elliptic.P521():
			oid, opts = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512
		default:
			return nil, nil, errors.New("unsupported ECDSA curve")
		}
	case ed25519.PublicKey:
		oid, opts = asn1.ObjectIdentifier{1, 3, 101, 112}, crypto.Hash(0)
	case *rsa.PublicKey:
		oid, opts, withNull = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, true
	default:
		return nil, nil, fmt.Errorf("unsupported key type %T", pub)
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if withNull {
			b.AddASN1NULL()
		}
	})
	alg, err := b.Bytes()
	return alg, opts, err
}

// encodeCRL signs a CertificateList with the entries e. The signature is
// checked against the issuer's public key before the CRL is returned, so a
// faulty signer cannot publish a CRL nobody can verify.
func encodeCRL(spec crlSpec, e *crlEntries) ([]byte, error) {
	if len(spec.issuer.SubjectKeyId) == 0 {
		return nil, errors.New("the issuer certificate has no subject key identifier")
	}
	alg, opts, err := signatureFor(spec.signer.Public())
	if err != nil {
		return nil, err
	}
	var this, next [17]byte
	exts := cryptobyte.NewBuilder(nil)
	exts.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addExtension(b, oidAuthorityKey, false, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(spec.issuer.SubjectKeyId) })
				})
			})
			addExtension(b, oidCRLNumber, false, func(b *cryptobyte.Builder) { b.AddASN1BigInt(big.NewInt(spec.number)) })
			if spec.distributionPoint != "" {
				// RFC 5280, section 5.2.5: critical; distributionPoint
				// [0] holding fullName [0], a URI.
				addExtension(b, oidIssuingDistPt, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(spec.distributionPoint)) })
							})
						})
						if spec.userOnly {
							b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0xff}) })
						}
					})
				})
			}
		})
	})
	extDER, err := exts.Bytes()
	if err != nil {
		return nil, err
	}
	head := []byte{0x02, 0x01, 0x01} // version v2
	head = append(head, alg...)
	head = append(head, spec.issuer.RawSubject...)
	head = append(head, appendCRLTime(this[:0], spec.thisUpdate)...)
	head = append(head, appendCRLTime(next[:0], spec.nextUpdate)...)
	var entriesHead []byte
	if e != nil && e.count > 0 { // an empty revokedCertificates is left out
		entriesHead = appendLength([]byte{0x30}, e.size)
	}
	tbsLen := len(head) + len(entriesHead) + len(extDER)
	if e != nil && e.count > 0 {
		tbsLen += e.size
	}
	// One buffer for the whole CertificateList: room for its header in
	// front, the TBSCertList written once, then the signature after it.
	const headroom = 6
	tbsHeader := appendLength([]byte{0x30}, tbsLen)
	maxSig := 600 // RSA 4096 and every ECDSA signature fit
	out := make([]byte, headroom, headroom+len(tbsHeader)+tbsLen+len(alg)+maxSig+8)
	out = append(out, tbsHeader...)
	out = append(out, head...)
	if entriesHead != nil {
		out = append(out, entriesHead...)
		for _, c := range e.chunks {
			out = append(out, c...)
		}
	}
	out = append(out, extDER...)
	tbs := out[headroom:]

	sig, err := crypto.SignMessage(spec.signer, rand.Reader, tbs, opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if err := checkSignature(spec.issuer.PublicKey, tbs, sig, opts); err != nil {
		return nil, err
	}
	sigLen := 1 + len(sig) // BIT STRING: unused-bits octet, then the signature
	out = append(out, alg...)
	out = append(out, 0x03)
	out = appendLength(out, sigLen)
	out = append(out, 0)
	out = append(out, sig...)
	outer := appendLength([]byte{0x30}, len(out)-headroom)
	if len(outer) > headroom {
		return nil, errors.New("a CRL over 4 GB")
	}
	start := headroom - len(outer)
	copy(out[start:], outer)
	return out[start:], nil
}

func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// checkSignature verifies sig over msg with pub.
func checkSignature(pub crypto.PublicKey, msg, sig []byte, opts crypto.SignerOpts) error {
	digest := msg
	if h := opts.HashFunc(); h != 0 {
		hh := h.New()
		hh.Write(msg)
		digest = hh.Sum(nil)
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig) == nil
	}
	if !ok {
		return errors.New("the signer's CRL signature does not verify with the issuer's key")
	}
	return nil
}

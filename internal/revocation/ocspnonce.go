package revocation

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// oidOCSPNonce is id-pkix-ocsp-nonce (RFC 8954).
var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// maxNonce is the longest nonce echoed (RFC 8954, section 2.1: responders
// MAY leave out longer ones).
const maxNonce = 32

// requestNonce returns the extnValue of the nonce extension in the
// requestExtensions of a DER OCSPRequest (RFC 6960, section 4.1.1), or
// nil when there is none or its nonce is not 1 to 32 octets.
// x/crypto/ocsp does not expose request extensions, so they are read here.
func requestNonce(raw []byte) []byte {
	in := cryptobyte.String(raw)
	var req, tbs cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil
	}
	var exts cryptobyte.String
	var present bool
	// version [0], requestorName [1] and requestList come first.
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed()) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(2).ContextSpecific().Constructed()) || !present {
		return nil
	}
	var list cryptobyte.String
	if !exts.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil
	}
	for !list.Empty() {
		var ext cryptobyte.String
		var oid asn1.ObjectIdentifier
		var value []byte
		if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) {
			return nil
		}
		if !oid.Equal(oidOCSPNonce) {
			continue
		}
		// The extnValue is the DER OCTET STRING of the nonce.
		nonce := cryptobyte.String(value)
		var inner []byte
		if !nonce.ReadASN1Bytes(&inner, cbasn1.OCTET_STRING) || !nonce.Empty() || len(inner) < 1 || len(inner) > maxNonce {
			return nil
		}
		return value
	}
	return nil
}

// addNonce returns resp, a successful DER OCSPResponse signed by key,
// with the nonce extension (extnValue nonce) added to the
// responseExtensions of its ResponseData and signed again by key (RFC
// 6960, section 4.2.1; RFC 8954). The responder certificate and the
// signature algorithm stay as they were.
func addNonce(resp, nonce []byte, key crypto.Signer) ([]byte, error) {
	in := cryptobyte.String(resp)
	var outer, bytesField, rb, basicDER cryptobyte.String
	var status int
	var typ asn1.ObjectIdentifier
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !outer.ReadASN1Enum(&status) || status != 0 ||
		!outer.ReadASN1(&bytesField, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!bytesField.ReadASN1(&rb, cbasn1.SEQUENCE) || !rb.ReadASN1ObjectIdentifier(&typ) ||
		!rb.ReadASN1(&basicDER, cbasn1.OCTET_STRING) {
		return nil, errors.New("not a successful OCSP response")
	}
	var basic, tbs, sigAlg cryptobyte.String
	if !basicDER.ReadASN1(&basic, cbasn1.SEQUENCE) || !basic.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!basic.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) || !basic.SkipASN1(cbasn1.BIT_STRING) {
		return nil, errors.New("malformed BasicOCSPResponse")
	}
	certs := []byte(basic) // [0] certs, as they were
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidOCSPNonce)
					b.AddASN1OctetString(nonce)
				})
			})
		})
	})
	newTBS, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	// The responders' keys are P-256 (ecdsa-with-SHA256).
	digest := sha256.Sum256(newTBS)
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	out := cryptobyte.NewBuilder(nil)
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(typ)
				b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddBytes(newTBS)
						b.AddBytes(sigAlg)
						b.AddASN1BitString(sig)
						b.AddBytes(certs)
					})
				})
			})
		})
	})
	return out.Bytes()
}

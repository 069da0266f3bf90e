package certlint

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Lint verdicts by shape.
//
// Linting every leaf in full costs more than the rest of an issuance (about
// 400 µs of CPU on the benchmark machine, against 300-700 µs for the whole
// /v1/sign request), so CheckLeaf lints each *shape* of leaf in full once
// and reuses the verdict for later leaves of the same shape. Two leaves
// have the same shape when their TBSCertificates are equal byte for byte
// except in the fields that are different in every certificate:
//
//   - the serial number, which must be positive, non-zero and at most 20
//     octets in both (else no shape: the leaf is linted in full);
//   - the validity, which must have the same encodings (UTCTime or
//     GeneralizedTime), the same lifetime to the second and the same UTC
//     dates of notBefore and notAfter — zlint's lints look at encodings,
//     lifetimes and, through their effective dates, at whole days;
//   - the subjectPublicKey bits, only for the key types whose value no
//     lint reads: Ed25519, and P-256 once the value is known not to be a
//     small key (the one value check of RFC and community lints for EC
//     keys, e_ecdsa_small_private_key, which isSmallP256Key repeats with a
//     table). RSA, P-384 and P-521 subject keys have no shape and are
//     linted in full every time (e_rsa_fermat_factorization and the other
//     RSA lints read the modulus);
//   - the subjectKeyIdentifier's 20 bytes, a hash of that key.
//
// Everything else — version, signature algorithm, issuer, subject, the key's
// algorithm and curve, every other extension with its criticality, and the
// order of it all — is part of the shape, so a new field in a profile makes
// a new shape rather than a wrong reuse. TestShapeCoversLintInputs holds
// this list to the zlint version in go.mod.
type shapeCache struct {
	mu     sync.RWMutex
	passed map[[32]byte]struct{}
}

// maxShapes bounds the cache; when full it starts again empty. Shapes
// include the day, so entries of past days are never hit again.
const maxShapes = 4096

func (c *shapeCache) has(s [32]byte) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.passed[s]
	return ok
}

func (c *shapeCache) add(s [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passed == nil || len(c.passed) >= maxShapes {
		c.passed = make(map[[32]byte]struct{})
	}
	c.passed[s] = struct{}{}
}

var (
	oidSubjectKeyID = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidEd25519      = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidECPublicKey  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256         = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
)

// leafShape returns the shape of the DER TBSCertificate tbs, or false when
// it has none (see above).
func leafShape(tbs []byte) ([32]byte, bool) {
	h := sha256.New()
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return [32]byte{}, false
	}
	// version [0] EXPLICIT
	var version cryptobyte.String
	if !body.ReadASN1Element(&version, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return [32]byte{}, false
	}
	h.Write(version)
	// serialNumber: positive, non-zero, at most 20 octets
	var serial cryptobyte.String
	if !body.ReadASN1(&serial, cbasn1.INTEGER) || len(serial) == 0 || len(serial) > 20 || serial[0]&0x80 != 0 ||
		len(bytes.TrimLeft(serial, "\x00")) == 0 || len(serial) > 1 && serial[0] == 0 && serial[1]&0x80 == 0 {
		return [32]byte{}, false
	}
	// signature, issuer
	for range 2 {
		var el cryptobyte.String
		if !body.ReadASN1Element(&el, cbasn1.SEQUENCE) {
			return [32]byte{}, false
		}
		h.Write(el)
	}
	// validity
	var validity cryptobyte.String
	if !body.ReadASN1(&validity, cbasn1.SEQUENCE) {
		return [32]byte{}, false
	}
	nb, nbTag, ok1 := readTime(&validity)
	na, naTag, ok2 := readTime(&validity)
	if !ok1 || !ok2 || !validity.Empty() {
		return [32]byte{}, false
	}
	fmt.Fprintf(h, "validity %d %d %s %s %d", nbTag, naTag, nb.UTC().Format(time.DateOnly), na.UTC().Format(time.DateOnly), na.Unix()-nb.Unix())
	// subject
	var subject cryptobyte.String
	if !body.ReadASN1Element(&subject, cbasn1.SEQUENCE) {
		return [32]byte{}, false
	}
	h.Write(subject)
	// subjectPublicKeyInfo: algorithm kept, bits dropped when allowed
	var spki, alg cryptobyte.String
	var bits asn1.BitString
	if !body.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.ReadASN1Element(&alg, cbasn1.SEQUENCE) ||
		!spki.ReadASN1BitString(&bits) || !spki.Empty() || bits.BitLength%8 != 0 {
		return [32]byte{}, false
	}
	switch {
	case bytes.Equal(alg, algEd25519):
	case bytes.Equal(alg, algP256):
		if small, ready := isSmallP256Key(bits.Bytes); small || !ready {
			return [32]byte{}, false
		}
	default:
		return [32]byte{}, false
	}
	h.Write(alg)
	fmt.Fprintf(h, "key %d", len(bits.Bytes))
	// No issuerUniqueID or subjectUniqueID; extensions [3] EXPLICIT
	var extsOuter, exts cryptobyte.String
	if !body.ReadASN1(&extsOuter, cbasn1.Tag(3).ContextSpecific().Constructed()) || !body.Empty() ||
		!extsOuter.ReadASN1(&exts, cbasn1.SEQUENCE) || !extsOuter.Empty() {
		return [32]byte{}, false
	}
	for !exts.Empty() {
		var ext, extBody cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !exts.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
			return [32]byte{}, false
		}
		if elem := ext; !elem.ReadASN1(&extBody, cbasn1.SEQUENCE) || !extBody.ReadASN1ObjectIdentifier(&oid) {
			return [32]byte{}, false
		}
		if !oid.Equal(oidSubjectKeyID) {
			h.Write(ext)
			continue
		}
		// critical BOOLEAN DEFAULT FALSE, then extnValue OCTET STRING
		// holding keyIdentifier OCTET STRING: keep all but those bytes.
		var value, keyID cryptobyte.String
		critical := extBody.PeekASN1Tag(cbasn1.BOOLEAN)
		var crit bool
		if critical && !extBody.ReadASN1Boolean(&crit) {
			return [32]byte{}, false
		}
		if !extBody.ReadASN1(&value, cbasn1.OCTET_STRING) || !extBody.Empty() ||
			!value.ReadASN1(&keyID, cbasn1.OCTET_STRING) || !value.Empty() {
			return [32]byte{}, false
		}
		fmt.Fprintf(h, "ski %t %t %d", critical, crit, len(keyID))
	}
	var s [32]byte
	h.Sum(s[:0])
	return s, true
}

// DER AlgorithmIdentifiers of the subject keys a shape may drop the bits of.
var (
	algEd25519 = mustMarshal(struct{ OID asn1.ObjectIdentifier }{oidEd25519})
	algP256    = mustMarshal(struct {
		OID   asn1.ObjectIdentifier
		Curve asn1.ObjectIdentifier
	}{oidECPublicKey, oidP256})
)

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// readTime reads a UTCTime or GeneralizedTime.
func readTime(s *cryptobyte.String) (time.Time, cbasn1.Tag, bool) {
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		return t, cbasn1.UTCTime, s.ReadASN1UTCTime(&t)
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		return t, cbasn1.GeneralizedTime, s.ReadASN1GeneralizedTime(&t)
	}
	return t, 0, false
}

package ca

import (
	"bytes"
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
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshpki/meshpki/internal/certlint"
)

// The leaf fast path. x509.CreateCertificate encodes the TBSCertificate with
// reflection-based encoding/asn1 and, after signing, verifies its own
// signature. For an issuer key held in this process as *ecdsa.PrivateKey or
// ed25519.PrivateKey, signLeafFast builds the same DER with cryptobyte and
// does not verify; docs/CA.md ("How leaves are signed") says why that is
// safe. Every other signer — RSA, PKCS#11, KMS, any wrapper — keeps
// x509.CreateCertificate. The output is byte-identical to CreateCertificate's
// for the templates leafTemplate builds; TestLeafTBSMatchesCreateCertificate
// and FuzzLeafTBS hold the two paths together.

// Object identifiers of RFC 5280, RFC 5758 and RFC 8410.
var (
	oidCommonName                = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidExtensionKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtensionExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtensionBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtensionSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtensionAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtensionSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtensionAuthorityInfo    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidExtensionCRLDistribution  = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidAccessOCSP                = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1}
	oidAccessCAIssuers           = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}

	oidExtKeyUsageServerAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidExtKeyUsageClientAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}

	oidSignatureECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSignatureECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSignatureECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSignatureEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// DER AlgorithmIdentifiers of the fast path's signature algorithms; the
// parameters are absent (RFC 5758, section 3.2; RFC 8410, section 3).
var (
	sigAlgECDSAWithSHA256 = algorithmIdentifier(oidSignatureECDSAWithSHA256)
	sigAlgECDSAWithSHA384 = algorithmIdentifier(oidSignatureECDSAWithSHA384)
	sigAlgECDSAWithSHA512 = algorithmIdentifier(oidSignatureECDSAWithSHA512)
	sigAlgEd25519         = algorithmIdentifier(oidSignatureEd25519)
)

func algorithmIdentifier(oid asn1.ObjectIdentifier) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
	})
	return b.BytesOrPanic()
}

// ASN.1 tags of GeneralName (RFC 5280, section 4.2.1.6) and of the
// TBSCertificate's explicitly tagged fields.
var (
	tagGeneralNameEmail = cbasn1.Tag(1).ContextSpecific()
	tagGeneralNameDNS   = cbasn1.Tag(2).ContextSpecific()
	tagGeneralNameURI   = cbasn1.Tag(6).ContextSpecific()
	tagGeneralNameIP    = cbasn1.Tag(7).ContextSpecific()
	tagKeyIdentifier    = cbasn1.Tag(0).ContextSpecific()
	tagURI              = cbasn1.Tag(6).ContextSpecific()
	tagDistPointName    = cbasn1.Tag(0).ContextSpecific().Constructed() // DistributionPoint.distributionPoint, and its fullName
	tagTBSVersion       = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagTBSExtensions    = cbasn1.Tag(3).ContextSpecific().Constructed()
	tagPrintableString  = cbasn1.Tag(19)
)

// createLeaf lints, then signs, tmpl for pub with the issuer's key: on the
// fast path when the key and the template allow it, else with
// x509.CreateCertificate. Lint before sign (as Let's Encrypt's Boulder
// does): the TBSCertificate is first signed with a throwaway key of the
// issuer key's type, that certificate is linted (certlint), and only if it
// passes is the same TBSCertificate signed with the issuer's key. A
// certificate that would fail is refused with a *certlint.Error and the
// issuer's key never signs it. certlint reuses the verdict of an earlier
// leaf of the same shape (internal/certlint/shape.go says what that is and
// why it is safe), which is what keeps linting cheap.
func (iss *Issuer) createLeaf(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	lk, err := lintKeyFor(iss.Signer.Public())
	if err != nil {
		return nil, err
	}
	linter := certlint.Default()
	if fs, ok := fastSignerFor(iss.Signer); ok && fastPathTemplate(tmpl) {
		tbs, err := leafTBSFast(fs, tmpl, iss.Cert, pub)
		if err != nil {
			return nil, err
		}
		if err := linter.CheckLeaf(tbs, func() ([]byte, error) { return assembleCert(lk, fs, tbs) }); err != nil {
			return nil, err
		}
		return assembleCert(fs.key, fs, tbs)
	}
	lintParent := *iss.Cert
	lintParent.PublicKey = lk.Public()
	linted, err := x509.CreateCertificate(rand.Reader, tmpl, &lintParent, pub, lk)
	if err != nil {
		return nil, fmt.Errorf("lint copy: %w", err)
	}
	if err := linter.CheckLeaf(tbsOf(linted), func() ([]byte, error) { return linted, nil }); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Signer)
	if err != nil {
		return nil, err
	}
	// The signer chose the signature algorithm again; what it signed must
	// be exactly what was linted.
	if a, b := tbsOf(linted), tbsOf(der); a == nil || !bytes.Equal(a, b) {
		return nil, errors.New("the signed TBSCertificate differs from the linted one")
	}
	return der, nil
}

// tbsOf returns the DER TBSCertificate of a DER certificate, or nil.
func tbsOf(der []byte) []byte {
	in := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil
	}
	return tbs
}

// lintKeys holds one throwaway key per issuer key shape, made on first use.
var lintKeys sync.Map // string → crypto.Signer

// lintKeyFor returns the throwaway key that signs the lint copy of a
// certificate for an issuer with public key pub: same algorithm, same curve,
// so that the signature algorithm in the TBSCertificate is the one the
// issuer's signature will carry. It is never used for anything else.
func lintKeyFor(pub crypto.PublicKey) (crypto.Signer, error) {
	var shape string
	var gen func() (crypto.Signer, error)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		shape = "ec-" + k.Curve.Params().Name
		gen = func() (crypto.Signer, error) { return ecdsa.GenerateKey(k.Curve, rand.Reader) }
	case ed25519.PublicKey:
		shape = "ed25519"
		gen = func() (crypto.Signer, error) { _, priv, err := ed25519.GenerateKey(rand.Reader); return priv, err }
	case *rsa.PublicKey:
		// Every RSA key size signs with sha256WithRSAEncryption here.
		shape = "rsa"
		gen = func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	default:
		return nil, fmt.Errorf("no lint key for an issuer key of type %T", pub)
	}
	if s, ok := lintKeys.Load(shape); ok {
		return s.(crypto.Signer), nil
	}
	s, err := gen()
	if err != nil {
		return nil, fmt.Errorf("make lint key: %w", err)
	}
	actual, _ := lintKeys.LoadOrStore(shape, s)
	return actual.(crypto.Signer), nil
}

// fastSigner is an in-process issuer key that signLeafFast may use.
type fastSigner struct {
	key    crypto.Signer
	hash   crypto.Hash // 0 for Ed25519, which signs the message itself
	sigAlg []byte      // DER AlgorithmIdentifier
}

// fastSignerFor returns the fast-path signer for s, or false when s is not
// exactly an *ecdsa.PrivateKey on P-256, P-384 or P-521 or an
// ed25519.PrivateKey. Signers behind any other type, including wrappers
// around those keys, are opaque and take x509.CreateCertificate.
func fastSignerFor(s crypto.Signer) (fastSigner, bool) {
	switch k := s.(type) {
	case *ecdsa.PrivateKey:
		if k == nil {
			return fastSigner{}, false
		}
		switch k.Curve {
		case elliptic.P256():
			return fastSigner{key: k, hash: crypto.SHA256, sigAlg: sigAlgECDSAWithSHA256}, true
		case elliptic.P384():
			return fastSigner{key: k, hash: crypto.SHA384, sigAlg: sigAlgECDSAWithSHA384}, true
		case elliptic.P521():
			return fastSigner{key: k, hash: crypto.SHA512, sigAlg: sigAlgECDSAWithSHA512}, true
		}
	case ed25519.PrivateKey:
		if len(k) == ed25519.PrivateKeySize {
			return fastSigner{key: k, sigAlg: sigAlgEd25519}, true
		}
	}
	return fastSigner{}, false
}

// fastPathTemplate reports whether marshalLeafTBS encodes tmpl exactly as
// x509.CreateCertificate would: every template field CreateCertificate reads
// is either one marshalLeafTBS handles or zero. leafTemplate builds only
// such templates (TestSignLeafFastPathVerifies checks); anything else falls
// back to CreateCertificate rather than risk a different certificate.
func fastPathTemplate(tmpl *x509.Certificate) bool {
	n := tmpl.Subject
	subjectIsCNOnly := len(tmpl.RawSubject) == 0 && len(n.Country)+len(n.Organization)+len(n.OrganizationalUnit)+
		len(n.Locality)+len(n.Province)+len(n.StreetAddress)+len(n.PostalCode)+len(n.Names)+len(n.ExtraNames) == 0 &&
		n.SerialNumber == ""
	for _, u := range tmpl.ExtKeyUsage {
		if u != x509.ExtKeyUsageServerAuth && u != x509.ExtKeyUsageClientAuth {
			return false
		}
	}
	return tmpl.SerialNumber != nil && tmpl.SerialNumber.Sign() >= 0 && subjectIsCNOnly &&
		tmpl.SignatureAlgorithm == x509.UnknownSignatureAlgorithm &&
		!tmpl.IsCA && tmpl.MaxPathLen == 0 && !tmpl.MaxPathLenZero &&
		len(tmpl.AuthorityKeyId) == 0 && len(tmpl.UnknownExtKeyUsage) == 0 &&
		len(tmpl.ExtraExtensions) == 0 && len(tmpl.PolicyIdentifiers) == 0 && len(tmpl.Policies) == 0 &&
		len(tmpl.PermittedDNSDomains)+len(tmpl.ExcludedDNSDomains)+len(tmpl.PermittedIPRanges)+
			len(tmpl.ExcludedIPRanges)+len(tmpl.PermittedEmailAddresses)+len(tmpl.ExcludedEmailAddresses)+
			len(tmpl.PermittedURIDomains)+len(tmpl.ExcludedURIDomains) == 0
}

// leafTBSFast encodes the TBSCertificate that
// x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, fs.key) would sign;
// assembleCert then signs it, and nothing verifies the signature afterwards
// (docs/CA.md says why that is safe). tmpl must pass fastPathTemplate.
func leafTBSFast(fs fastSigner, tmpl, issuer *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	// CreateCertificate refuses a key that does not match the issuer
	// certificate; without the self-check this is what keeps a wrong key
	// from producing certificates that never verify.
	if issuerKey, ok := fs.key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !issuerKey.Equal(issuer.PublicKey) {
		return nil, errors.New("signer does not match the issuer certificate's public key")
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return marshalLeafTBS(tmpl, issuer, spki, fs.sigAlg)
}

// assembleCert signs tbs with key (of fs's algorithm) and returns the DER
// Certificate.
func assembleCert(key crypto.Signer, fs fastSigner, tbs []byte) ([]byte, error) {
	sig, err := crypto.SignMessage(key, rand.Reader, tbs, fs.hash)
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(fs.sigAlg)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(fs.sigAlg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// marshalLeafTBS encodes the TBSCertificate (RFC 5280, section 4.1) that
// x509.CreateCertificate makes from tmpl, issuer and the DER
// SubjectPublicKeyInfo spki, signed with the algorithm sigAlg (a DER
// AlgorithmIdentifier). tmpl must pass fastPathTemplate.
func marshalLeafTBS(tmpl, issuer *x509.Certificate, spki, sigAlg []byte) ([]byte, error) {
	if len(issuer.RawSubject) == 0 {
		return nil, errors.New("issuer certificate has no raw subject")
	}
	subject, err := marshalCommonNameSubject(tmpl.Subject.CommonName)
	if err != nil {
		return nil, err
	}
	// As CreateCertificate: the AKI is the issuer's SKI unless the leaf is
	// self-issued.
	var authorityKeyID []byte
	if !bytes.Equal(issuer.RawSubject, subject) {
		authorityKeyID = issuer.SubjectKeyId
	}
	sans, err := marshalLeafSANs(tmpl)
	if err != nil {
		return nil, err
	}
	notBefore, err := marshalCertTime(tmpl.NotBefore)
	if err != nil {
		return nil, err
	}
	notAfter, err := marshalCertTime(tmpl.NotAfter)
	if err != nil {
		return nil, err
	}

	// The fixed fields and extensions take under 400 bytes.
	b := cryptobyte.NewBuilder(make([]byte, 0, 400+len(issuer.RawSubject)+len(subject)+len(spki)+len(sans)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagTBSVersion, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddBytes(sigAlg)
		b.AddBytes(issuer.RawSubject)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(notBefore)
			b.AddBytes(notAfter)
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		// The extensions in crypto/x509's order (buildCertExtensions):
		// keyUsage, extKeyUsage, basicConstraints, SKI, AKI,
		// authorityInfoAccess, subjectAltName, cRLDistributionPoints.
		if tmpl.KeyUsage == 0 && len(tmpl.ExtKeyUsage) == 0 && !tmpl.BasicConstraintsValid &&
			len(tmpl.SubjectKeyId) == 0 && len(authorityKeyID) == 0 && sans == nil &&
			len(tmpl.OCSPServer)+len(tmpl.IssuingCertificateURL)+len(tmpl.CRLDistributionPoints) == 0 {
			return // the extensions field is OPTIONAL and omitted when empty
		}
		b.AddASN1(tagTBSExtensions, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if tmpl.KeyUsage != 0 {
					addCertExtension(b, oidExtensionKeyUsage, true, func(b *cryptobyte.Builder) {
						addKeyUsageBits(b, tmpl.KeyUsage)
					})
				}
				if len(tmpl.ExtKeyUsage) > 0 {
					addCertExtension(b, oidExtensionExtKeyUsage, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, u := range tmpl.ExtKeyUsage {
								if u == x509.ExtKeyUsageServerAuth {
									b.AddASN1ObjectIdentifier(oidExtKeyUsageServerAuth)
								} else {
									b.AddASN1ObjectIdentifier(oidExtKeyUsageClientAuth)
								}
							}
						})
					})
				}
				if tmpl.BasicConstraintsValid {
					// CA:FALSE and no pathLenConstraint: both fields take
					// their DEFAULT and DER leaves them out.
					addCertExtension(b, oidExtensionBasicConstraints, true, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
					})
				}
				if len(tmpl.SubjectKeyId) > 0 {
					addCertExtension(b, oidExtensionSubjectKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(tmpl.SubjectKeyId)
					})
				}
				if len(authorityKeyID) > 0 {
					addCertExtension(b, oidExtensionAuthorityKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(tagKeyIdentifier, func(b *cryptobyte.Builder) {
								b.AddBytes(authorityKeyID)
							})
						})
					})
				}
				if len(tmpl.OCSPServer)+len(tmpl.IssuingCertificateURL) > 0 {
					// RFC 5280, section 4.2.2.1: AccessDescriptions, OCSP
					// first as CreateCertificate writes them.
					addCertExtension(b, oidExtensionAuthorityInfo, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							addAccess := func(method asn1.ObjectIdentifier, urls []string) {
								for _, u := range urls {
									b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
										b.AddASN1ObjectIdentifier(method)
										b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
									})
								}
							}
							addAccess(oidAccessOCSP, tmpl.OCSPServer)
							addAccess(oidAccessCAIssuers, tmpl.IssuingCertificateURL)
						})
					})
				}
				if sans != nil {
					// RFC 5280, section 4.2.1.6: critical when the subject
					// is an empty sequence.
					addCertExtension(b, oidExtensionSubjectAltName, len(subject) == 2, func(b *cryptobyte.Builder) {
						b.AddBytes(sans)
					})
				}
				if len(tmpl.CRLDistributionPoints) > 0 {
					// RFC 5280, section 4.2.1.13: one DistributionPoint
					// per URL, each with only a fullName.
					addCertExtension(b, oidExtensionCRLDistribution, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, u := range tmpl.CRLDistributionPoints {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1(tagDistPointName, func(b *cryptobyte.Builder) {
										b.AddASN1(tagDistPointName, func(b *cryptobyte.Builder) {
											b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
										})
									})
								})
							}
						})
					})
				}
			})
		})
	})
	return b.Bytes()
}

// addCertExtension adds an Extension whose extnValue is what value writes. A
// non-critical extension leaves out the critical field, which DEFAULTs to
// FALSE.
func addCertExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addKeyUsageBits adds the KeyUsage BIT STRING as crypto/x509's marshalKeyUsage
// does: bit 0 (digitalSignature) first, one or two bytes, trailing zero bits
// counted as unused.
func addKeyUsageBits(b *cryptobyte.Builder, ku x509.KeyUsage) {
	bits := [2]byte{reverseBitsInByte(byte(ku)), reverseBitsInByte(byte(ku >> 8))}
	n := 1
	if bits[1] != 0 {
		n = 2
	}
	bitLength := 0
	for i := n*8 - 1; i >= 0; i-- {
		if bits[i/8]&(0x80>>(i%8)) != 0 {
			bitLength = i + 1
			break
		}
	}
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(uint8((8 - bitLength%8) % 8))
		b.AddBytes(bits[:n])
	})
}

func reverseBitsInByte(v byte) byte {
	var r byte
	for range 8 {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}

// marshalCommonNameSubject encodes a Name holding only cn, as
// pkix.Name{CommonName: cn} marshals: an empty SEQUENCE when cn is empty,
// otherwise a PrintableString when every character allows it ('*' and '&'
// do not) and a UTF8String when not.
func marshalCommonNameSubject(cn string) ([]byte, error) {
	var b cryptobyte.Builder
	if cn == "" {
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		return b.Bytes()
	}
	tag := tagPrintableString
	for i := 0; i < len(cn); i++ {
		if !isPrintableStringChar(cn[i]) {
			if !utf8.ValidString(cn) {
				return nil, errors.New("subject common name is not valid UTF-8")
			}
			tag = cbasn1.UTF8String
			break
		}
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidCommonName)
				b.AddASN1(tag, func(b *cryptobyte.Builder) {
					b.AddBytes([]byte(cn))
				})
			})
		})
	})
	return b.Bytes()
}

// isPrintableStringChar reports whether c is in the PrintableString alphabet (X.680,
// section 41.4).
func isPrintableStringChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		'\'' <= c && c <= ')' || '+' <= c && c <= '/' || c == ' ' || c == ':' || c == '=' || c == '?'
}

// marshalLeafSANs encodes the GeneralNames of the subjectAltName extension in
// crypto/x509's order — DNS names, emails, IP addresses, URIs — or returns
// nil when tmpl has no names. IPv4 addresses take 4 bytes. Names that are not
// IA5Strings (ASCII) are refused.
func marshalLeafSANs(tmpl *x509.Certificate) ([]byte, error) {
	if len(tmpl.DNSNames)+len(tmpl.EmailAddresses)+len(tmpl.IPAddresses)+len(tmpl.URIs) == 0 {
		return nil, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addIA5 := func(tag cbasn1.Tag, s string) {
			if err := checkIA5(s); err != nil {
				b.SetError(err)
				return
			}
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
		for _, name := range tmpl.DNSNames {
			addIA5(tagGeneralNameDNS, name)
		}
		for _, email := range tmpl.EmailAddresses {
			addIA5(tagGeneralNameEmail, email)
		}
		for _, ip := range tmpl.IPAddresses {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			b.AddASN1(tagGeneralNameIP, func(b *cryptobyte.Builder) { b.AddBytes(ip) })
		}
		for _, uri := range tmpl.URIs {
			addIA5(tagGeneralNameURI, uri.String())
		}
	})
	return b.Bytes()
}

func checkIA5(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return fmt.Errorf("subjectAltName %q cannot be encoded as an IA5String", s)
		}
	}
	return nil
}

// marshalCertTime encodes t in UTC with seconds precision: a UTCTime for the years
// 1950 to 2049 and a GeneralizedTime otherwise (RFC 5280, section 4.1.2.5).
func marshalCertTime(t time.Time) ([]byte, error) {
	t = t.UTC()
	year := t.Year()
	var tag cbasn1.Tag
	var layout string
	switch {
	case 1950 <= year && year < 2050:
		tag, layout = cbasn1.UTCTime, "060102150405Z"
	case 0 <= year && year <= 9999:
		tag, layout = cbasn1.GeneralizedTime, "20060102150405Z"
	default:
		return nil, fmt.Errorf("time %s cannot be encoded in a certificate", t.Format(time.RFC3339))
	}
	var buf [2 + 15]byte
	enc := t.AppendFormat(append(buf[:0], byte(tag), 0), layout)
	enc[1] = byte(len(enc) - 2)
	return enc, nil
}

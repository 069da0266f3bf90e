package certfiles

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"time"
	"unicode/utf16"
)

// The Java KeyStore (JKS) format, for Java services that still read it
// (PKCS#12 is Java's default since 9). One private-key entry holds the key,
// protected with the JDK's key protector under the store password, and its
// chain; the store ends with the SHA-1 integrity digest keytool checks.

var oidJKSKeyProtector = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 42, 2, 17, 1, 1}

const (
	jksMagic   = 0xFEEDFEED
	jksVersion = 2
	jksKeyTag  = 1
	// jksWhitener is the constant the JDK mixes into the store digest.
	jksWhitener = "Mighty Aphrodite"
)

// encodeJKS returns a keystore with one private-key entry named alias.
func encodeJKS(key crypto.Signer, chain []*x509.Certificate, alias, password string, now time.Time) ([]byte, error) {
	if password == "" {
		return nil, errors.New("certfiles: a JKS keystore needs a password")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	pw := utf16BE(password)
	protected, err := protectJKSKey(der, pw)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	u32 := func(v uint32) { binary.Write(&b, binary.BigEndian, v) }
	utf := func(s string) { binary.Write(&b, binary.BigEndian, uint16(len(s))); b.WriteString(s) } // ASCII aliases only
	u32(jksMagic)
	u32(jksVersion)
	u32(1)
	u32(jksKeyTag)
	utf(alias)
	binary.Write(&b, binary.BigEndian, uint64(now.UnixMilli()))
	u32(uint32(len(protected)))
	b.Write(protected)
	u32(uint32(len(chain)))
	for _, c := range chain {
		utf("X.509")
		u32(uint32(len(c.Raw)))
		b.Write(c.Raw)
	}
	h := sha1.New()
	h.Write(pw)
	h.Write([]byte(jksWhitener))
	h.Write(b.Bytes())
	b.Write(h.Sum(nil))
	return b.Bytes(), nil
}

// protectJKSKey is the JDK's KeyProtector: the PKCS#8 key XORed with a
// SHA-1 stream keyed by the password and a random salt, followed by a
// SHA-1 check of password and key, in an EncryptedPrivateKeyInfo.
func protectJKSKey(plain, pw []byte) ([]byte, error) {
	salt := make([]byte, sha1.Size)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	stream := make([]byte, 0, len(plain)+sha1.Size)
	d := salt
	for len(stream) < len(plain) {
		h := sha1.New()
		h.Write(pw)
		h.Write(d)
		d = h.Sum(nil)
		stream = append(stream, d...)
	}
	out := append([]byte(nil), salt...)
	for i, p := range plain {
		out = append(out, p^stream[i])
	}
	check := sha1.New()
	check.Write(pw)
	check.Write(plain)
	out = check.Sum(out)
	return asn1.Marshal(struct {
		Algorithm struct {
			OID    asn1.ObjectIdentifier
			Params asn1.RawValue
		}
		Data []byte
	}{Algorithm: struct {
		OID    asn1.ObjectIdentifier
		Params asn1.RawValue
	}{oidJKSKeyProtector, asn1.NullRawValue}, Data: out})
}

// utf16BE is the password as the JDK hashes it: UTF-16, big-endian.
func utf16BE(s string) []byte {
	var out []byte
	for _, r := range utf16.Encode([]rune(s)) {
		out = append(out, byte(r>>8), byte(r))
	}
	return out
}

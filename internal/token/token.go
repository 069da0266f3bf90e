// Package token mints and verifies the one-time tokens that authorize a
// certificate request (and, later, a node join).
//
// Tokens are JWTs (RFC 7519) in JWS compact form (RFC 7515) signed with
// HMAC-SHA256 (HS256, RFC 7518 section 3.2) under a secret of at least 32
// bytes. A symmetric MAC fits because the CA server is both the only minter
// (through the admin API) and the only verifier: no third party needs to
// check a token, so there is no public key to publish, the server holds the
// only key, and verification costs microseconds rather than the
// milliseconds of an RSA or ECDSA check. Only HS256 is accepted; "none" and
// every asymmetric algorithm are refused before the signature is examined.
//
// Verify checks signature, issuer, audience, purpose and validity period.
// It does not stop replay: the caller must record each token ID (jti) in the
// store and refuse one it has seen, which makes a token single-use.
package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/meshpki/meshpki/internal/keys"
)

// Issuer is the "iss" claim of every token.
const Issuer = "meshpki"

// Purposes a token can be minted for.
const (
	PurposeSign = "sign" // a certificate request to /v1/sign
	PurposeJoin = "join" // reserved for node join tokens
)

// MinSecretSize is the smallest HMAC secret NewKeyring accepts, in bytes.
const MinSecretSize = 32

// MaxTokenSize is the longest raw token Verify will parse, in bytes.
const MaxTokenSize = 8 << 10

// MaxIDLength is the longest token ID (jti) accepted, in characters.
const MaxIDLength = 64

// notBeforeLeeway tolerates clock skew between the host that chose a token's
// not-before time and the verifier. Expiry gets no leeway.
const notBeforeLeeway = 30 * time.Second

// algorithms is the only list Verify parses with.
var algorithms = []jose.SignatureAlgorithm{jose.HS256}

// Claims are the contents of a token. Times travel with one-second
// precision.
type Claims struct {
	ID          string   // "jti"; Mint fills a random 128-bit hex ID when empty
	Provisioner string   // "prov": the provisioner that authorized the token
	Subject     string   // "sub": the requested subject
	SANs        []string // "sans": the requested subject alternative names
	Audience    string   // "aud": the one endpoint URL the token is good for
	Purpose     string   // "purpose": PurposeSign or PurposeJoin

	IssuedAt  time.Time // "iat"; omitted when zero
	NotBefore time.Time // "nbf"; omitted when zero
	Expiry    time.Time // "exp"; required
}

// wireClaims is the JSON payload. Numeric dates are whole seconds; an
// audience sent as an array is refused as malformed.
type wireClaims struct {
	Issuer      string   `json:"iss"`
	ID          string   `json:"jti"`
	Provisioner string   `json:"prov,omitempty"`
	Subject     string   `json:"sub,omitempty"`
	SANs        []string `json:"sans,omitempty"`
	Audience    string   `json:"aud"`
	Purpose     string   `json:"purpose"`
	IssuedAt    int64    `json:"iat,omitempty"`
	NotBefore   int64    `json:"nbf,omitempty"`
	Expiry      int64    `json:"exp"`
}

// Keyring mints and verifies tokens under one HMAC-SHA256 key: secret
// bytes, or a key an HSM or KMS keeps (NewKeyringMAC). It is safe for
// concurrent use.
type Keyring struct {
	mac    hs256
	signer jose.Signer
}

// NewKeyring returns a keyring for secret, which must be at least
// MinSecretSize bytes of random data. The secret is copied.
func NewKeyring(secret []byte) (*Keyring, error) {
	if len(secret) < MinSecretSize {
		return nil, fmt.Errorf("token: secret is %d bytes, need at least %d", len(secret), MinSecretSize)
	}
	return NewKeyringMAC(keys.SecretMAC(append([]byte(nil), secret...)))
}

// NewKeyringMAC returns a keyring whose HS256 signatures m computes.
func NewKeyringMAC(m keys.MAC) (*Keyring, error) {
	k := &Keyring{mac: hs256{m}}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.HS256, Key: k.mac},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	k.signer = signer
	return k, nil
}

// hs256 signs HS256 JWS payloads with a keys.MAC, as go-jose's opaque
// signer (verify checks them itself).
type hs256 struct{ m keys.MAC }

func (h hs256) Public() *jose.JSONWebKey        { return nil }
func (h hs256) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{jose.HS256} }

func (h hs256) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != jose.HS256 {
		return nil, jose.ErrUnsupportedAlgorithm
	}
	return h.m.MAC(payload)
}

// Mint returns a signed token for c. Expiry, Audience and Purpose are
// required; the issuer is always "meshpki". When c.ID is empty a random one
// is used; read it back with Verify, or set it first to record it.
func (k *Keyring) Mint(c Claims) (string, error) {
	switch {
	case c.Expiry.IsZero():
		return "", errors.New("token: cannot mint without an expiry")
	case c.Audience == "":
		return "", errors.New("token: cannot mint without an audience")
	case c.Purpose == "":
		return "", errors.New("token: cannot mint without a purpose")
	case len(c.ID) > MaxIDLength:
		return "", fmt.Errorf("token: ID is longer than %d characters", MaxIDLength)
	case !c.NotBefore.IsZero() && !c.Expiry.After(c.NotBefore):
		return "", errors.New("token: expiry must be after not-before")
	case !mintable(c.Expiry) || !mintable(c.NotBefore) || !mintable(c.IssuedAt):
		return "", errors.New("token: times must be between 1970 and the year 36000")
	}
	if c.ID == "" {
		id, err := randomID()
		if err != nil {
			return "", err
		}
		c.ID = id
	}
	wire := wireClaims{
		Issuer:      Issuer,
		ID:          c.ID,
		Provisioner: c.Provisioner,
		Subject:     c.Subject,
		SANs:        c.SANs,
		Audience:    c.Audience,
		Purpose:     c.Purpose,
		IssuedAt:    unixOrZero(c.IssuedAt),
		NotBefore:   unixOrZero(c.NotBefore),
		Expiry:      c.Expiry.Unix(),
	}
	raw, err := jwt.Signed(k.signer).Claims(wire).Serialize()
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if len(raw) > MaxTokenSize {
		return "", &TooLargeError{Size: len(raw)}
	}
	return raw, nil
}

// TooLargeError is Mint's error for claims whose token would exceed
// MaxTokenSize, which Verify would refuse.
type TooLargeError struct{ Size int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("token: the token would be %d bytes, more than the limit of %d; ask for fewer or shorter names", e.Size, MaxTokenSize)
}

func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: read random ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// mintable reports whether t is zero or a time Verify accepts.
func mintable(t time.Time) bool {
	return t.IsZero() || inRange(t.Unix()) && t.Unix() > 0
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

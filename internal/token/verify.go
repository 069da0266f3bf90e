package token

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Reason says why Verify refused a token. Its values are stable and fit for
// API error details and audit records.
type Reason string

// The reasons Verify gives.
const (
	ReasonMalformed   Reason = "malformed"     // not a well-formed meshpki token
	ReasonSignature   Reason = "signature"     // wrong algorithm, or not signed with this keyring's secret
	ReasonExpired     Reason = "expired"       // exp is not after now
	ReasonNotYetValid Reason = "not_yet_valid" // nbf is more than the allowed skew after now
	ReasonAudience    Reason = "audience"      // issued for another endpoint
	ReasonPurpose     Reason = "purpose"       // issued for another purpose
)

// Error is the error Verify returns. Msg never contains the token.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return "token: " + e.Msg }

func newError(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// maxTimestamp bounds numeric dates (about the year 36812), so that time
// arithmetic on them cannot overflow.
const maxTimestamp = 1 << 40

// Verify checks raw and returns its claims. It accepts only an HS256 token
// signed with this keyring's secret, issued by "meshpki", whose audience is
// exactly audience and whose purpose is exactly purpose, that expires after
// now and whose not-before is at most 30 seconds after now. Every error is
// an *Error. Verify does not detect replay; see the package documentation.
//
// When the key's HSM or KMS cannot compute the MAC, the error wraps
// keys.ErrMACUnavailable and is not an *Error: the token may be good.
func (k *Keyring) Verify(raw, audience, purpose string, now time.Time) (Claims, error) {
	return k.verify(raw, audience, purpose, now)
}

func (k *Keyring) verify(raw, audience, purpose string, now time.Time) (Claims, error) {
	if len(raw) > MaxTokenSize {
		return Claims{}, newError(ReasonMalformed, "longer than %d bytes", MaxTokenSize)
	}
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil {
		if alg := foreignAlgorithm(raw); alg != "" {
			return Claims{}, newError(ReasonSignature, "algorithm %s is not accepted: tokens are %s", alg, jose.HS256)
		}
		return Claims{}, newError(ReasonMalformed, "not an %s JWS in compact form", jose.HS256)
	}
	// The HS256 signature is checked here rather than by go-jose, so that a
	// MAC the key's HSM or KMS could not compute is told apart from a bad
	// signature. ParseSigned has checked the compact form and the algorithm;
	// the signing input is the first two parts as sent (RFC 7515, 5.2).
	parts := strings.SplitN(raw, ".", 3)
	if len(parts) != 3 {
		return Claims{}, newError(ReasonMalformed, "not an %s JWS in compact form", jose.HS256)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Claims{}, newError(ReasonMalformed, "not an %s JWS in compact form", jose.HS256)
	}
	want, err := k.mac.m.MAC([]byte(parts[0] + "." + parts[1]))
	if err != nil {
		return Claims{}, err
	}
	if !hmac.Equal(want, sig) {
		return Claims{}, newError(ReasonSignature, "signature does not verify: not minted by this server")
	}
	var wire wireClaims
	if err := tok.UnsafeClaimsWithoutVerification(&wire); err != nil {
		return Claims{}, newError(ReasonMalformed, "claims are not valid")
	}

	switch {
	case wire.Issuer != Issuer:
		return Claims{}, newError(ReasonMalformed, "issuer %q is not %q", wire.Issuer, Issuer)
	case wire.ID == "":
		return Claims{}, newError(ReasonMalformed, "no token ID (jti)")
	case len(wire.ID) > MaxIDLength:
		return Claims{}, newError(ReasonMalformed, "token ID is longer than %d characters", MaxIDLength)
	case wire.Expiry == 0:
		return Claims{}, newError(ReasonMalformed, "no expiry (exp)")
	case !inRange(wire.Expiry) || !inRange(wire.NotBefore) || !inRange(wire.IssuedAt):
		return Claims{}, newError(ReasonMalformed, "a time claim is out of range")
	case wire.Audience != audience:
		return Claims{}, newError(ReasonAudience, "issued for audience %q, not %q", wire.Audience, audience)
	case wire.Purpose != purpose:
		return Claims{}, newError(ReasonPurpose, "issued for purpose %q, not %q", wire.Purpose, purpose)
	}

	// exp and nbf are whole seconds, so comparing with now.Unix() is exact:
	// an integer exp is after now exactly when it is after floor(now).
	expiry := time.Unix(wire.Expiry, 0)
	if wire.Expiry <= now.Unix() {
		return Claims{}, newError(ReasonExpired, "expired %s ago", now.Sub(expiry).Truncate(time.Second))
	}
	if wire.NotBefore != 0 {
		notBefore := time.Unix(wire.NotBefore, 0)
		if notBefore.After(now.Add(notBeforeLeeway)) {
			return Claims{}, newError(ReasonNotYetValid, "not valid for another %s", notBefore.Sub(now).Truncate(time.Second))
		}
	}

	return Claims{
		ID:          wire.ID,
		Provisioner: wire.Provisioner,
		Subject:     wire.Subject,
		SANs:        wire.SANs,
		Audience:    wire.Audience,
		Purpose:     wire.Purpose,
		IssuedAt:    timeOrZero(wire.IssuedAt),
		NotBefore:   timeOrZero(wire.NotBefore),
		Expiry:      timeOrZero(wire.Expiry),
	}, nil
}

func inRange(sec int64) bool { return sec >= 0 && sec <= maxTimestamp }

// knownAlgorithms are the JWS algorithm names (RFC 7518 section 3.1 and
// RFC 8037) that foreignAlgorithm will name in an error.
var knownAlgorithms = map[string]bool{
	"none": true, "HS384": true, "HS512": true,
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true,
}

// foreignAlgorithm returns the algorithm named in raw's protected header if
// it is a known JWS algorithm other than HS256, so the error can say why a
// well-formed token was refused. It returns "" otherwise.
func foreignAlgorithm(raw string) string {
	encoded, _, ok := strings.Cut(raw, ".")
	if !ok {
		return ""
	}
	header, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return ""
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(header, &h) != nil || !knownAlgorithms[h.Alg] {
		return ""
	}
	return h.Alg
}

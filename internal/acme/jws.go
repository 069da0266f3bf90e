package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/go-jose/go-jose/v4"
)

// signatureAlgorithms are the JWS algorithms accepted for account keys
// (RFC 8555, section 6.2, and the choice: no HMAC, no PS*, no ES512).
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.EdDSA}

func algorithmNames() []string {
	names := make([]string, len(signatureAlgorithms))
	for i, a := range signatureAlgorithms {
		names[i] = string(a)
	}
	return names
}

// protectedHeader is the JWS protected header of an ACME request.
type protectedHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	JWK   json.RawMessage `json:"jwk"`
	KID   string          `json:"kid"`
	B64   *bool           `json:"b64"`
	Crit  json.RawMessage `json:"crit"`
}

// flattenedJWS is the only serialization ACME allows (RFC 8555, section
// 6.2): one signature, a protected header, no unprotected header.
type flattenedJWS struct {
	Protected *string `json:"protected"`
	Payload   *string `json:"payload"`
	Signature *string `json:"signature"`
}

// parsedJWS is a syntactically valid ACME JWS whose signature is not yet
// checked.
type parsedJWS struct {
	header    protectedHeader
	jwk       *jose.JSONWebKey // set when the header carries jwk
	payload   []byte           // decoded
	postAsGet bool             // the payload is the empty string
	sig       *jose.JSONWebSignature
}

// parseJWS checks the form of an ACME JWS: flattened JSON serialization,
// the protected header's members, an accepted algorithm, and exactly one of
// jwk and kid. It does not verify the signature.
func parseJWS(body []byte) (*parsedJWS, *Problem) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var f flattenedJWS
	if err := dec.Decode(&f); err != nil {
		return nil, malformed("the request body must be a JWS in flattened JSON serialization with only protected, payload and signature: %v", err)
	}
	if dec.More() {
		return nil, malformed("the request body has data after the JWS")
	}
	if f.Protected == nil || f.Payload == nil || f.Signature == nil {
		return nil, malformed("the JWS needs protected, payload and signature members")
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(*f.Protected)
	if err != nil {
		return nil, malformed("the JWS protected header is not base64url: %v", err)
	}
	var h protectedHeader
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, malformed("the JWS protected header is not a JSON object: %v", err)
	}
	if h.B64 != nil || len(h.Crit) > 0 {
		return nil, malformed("the JWS must not use b64 or crit header parameters")
	}
	if !acceptedAlg(h.Alg) {
		p := problem(http.StatusBadRequest, probBadSignatureAlgorithm, "JWS algorithm %q is not accepted", h.Alg)
		p.Algorithms = algorithmNames()
		return nil, p
	}
	if h.URL == "" {
		return nil, unauthorized("the JWS protected header has no url")
	}
	hasJWK, hasKID := len(h.JWK) > 0 && string(h.JWK) != "null", h.KID != ""
	if hasJWK == hasKID {
		return nil, malformed("the JWS protected header must have exactly one of jwk and kid")
	}
	payload, err := base64.RawURLEncoding.DecodeString(*f.Payload)
	if err != nil {
		return nil, malformed("the JWS payload is not base64url: %v", err)
	}
	sig, err := jose.ParseSignedJSON(string(body), signatureAlgorithms)
	if err != nil {
		return nil, malformed("the JWS cannot be parsed: %v", err)
	}
	if len(sig.Signatures) != 1 {
		return nil, malformed("the JWS must have exactly one signature")
	}
	p := &parsedJWS{header: h, payload: payload, postAsGet: *f.Payload == "", sig: sig}
	if hasJWK {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(h.JWK); err != nil {
			return nil, problem(http.StatusBadRequest, probBadPublicKey, "the jwk header is not a valid key: %v", err)
		}
		if prob := checkAccountKey(&k, h.Alg); prob != nil {
			return nil, prob
		}
		p.jwk = &k
	}
	return p, nil
}

func acceptedAlg(alg string) bool {
	for _, a := range signatureAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// checkAccountKey refuses private keys, weak keys and a key that does not
// fit the algorithm.
func checkAccountKey(k *jose.JSONWebKey, alg string) *Problem {
	if !k.Valid() || !k.IsPublic() {
		return problem(http.StatusBadRequest, probBadPublicKey, "the jwk must be a valid public key")
	}
	ok := false
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		ok = (alg == string(jose.ES256) && pub.Curve == elliptic.P256()) ||
			(alg == string(jose.ES384) && pub.Curve == elliptic.P384())
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return problem(http.StatusBadRequest, probBadPublicKey, "RSA account keys must have at least 2048 bits, this one has %d", pub.N.BitLen())
		}
		ok = alg == string(jose.RS256)
	case ed25519.PublicKey:
		ok = alg == string(jose.EdDSA)
	default:
		return problem(http.StatusBadRequest, probBadPublicKey, "account keys must be ECDSA P-256/P-384, RSA or Ed25519")
	}
	if !ok {
		p := problem(http.StatusBadRequest, probBadSignatureAlgorithm, "JWS algorithm %s does not fit the %s key", alg, keyDescription(k))
		p.Algorithms = algorithmNames()
		return p
	}
	return nil
}

func keyDescription(k *jose.JSONWebKey) string {
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + pub.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return "unknown"
}

// verify checks the JWS signature with key and returns the payload.
func (p *parsedJWS) verify(key *jose.JSONWebKey) *Problem {
	payload, err := p.sig.Verify(key)
	if err != nil {
		return malformed("the JWS signature does not verify")
	}
	if !bytes.Equal(payload, p.payload) {
		return malformed("the JWS payload does not match its signature")
	}
	return nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of k, base64url.
func thumbprint(k *jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(cryptoSHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

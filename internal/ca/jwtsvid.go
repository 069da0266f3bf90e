package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// JWTSVIDRequest asks for a JWT-SVID (SPIFFE JWT-SVID specification) for a
// registration entry the caller (the node API) found to apply.
type JWTSVIDRequest struct {
	SPIFFEID string
	Audience []string
	TTL      time.Duration
	Actor    string
	Detail   map[string]string // extra audit detail, e.g. the entry id
}

// jwtKey is the JWT-SVID signing key and how it is named in bundles.
type jwtKey struct {
	signer crypto.Signer
	kid    string
	alg    jose.SignatureAlgorithm
}

func newJWTKey(signer crypto.Signer, kid string) (*jwtKey, error) {
	if signer == nil {
		return nil, nil
	}
	alg, err := jwtAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	return &jwtKey{signer: signer, kid: kid, alg: alg}, nil
}

// JWTKey returns the key id and public key of the JWT-SVID signing key, for
// trust bundles; nil when the Authority has none.
func (a *Authority) JWTKey() (kid string, pub crypto.PublicKey) {
	if a.jwt == nil {
		return "", nil
	}
	return a.jwt.kid, a.jwt.signer.Public()
}

// SignJWTSVID signs a JWT-SVID after checking its SPIFFE ID against the
// spiffe provisioners now (as for X.509-SVIDs), and records its audit event
// before returning it. The token is never logged or audited.
func (a *Authority) SignJWTSVID(ctx context.Context, req JWTSVIDRequest) (string, time.Time, error) {
	if a.jwt == nil {
		return "", time.Time{}, errorf(KindUnavailable, "this CA has no JWT-SVID key")
	}
	sid, err := a.ParseSPIFFEID(req.SPIFFEID)
	if err != nil {
		return "", time.Time{}, err
	}
	if len(req.Audience) == 0 {
		return "", time.Time{}, errorf(KindBadRequest, "a JWT-SVID needs an audience")
	}
	detail := map[string]string{"audience": Clip(strings.Join(req.Audience, ","))}
	for k, v := range req.Detail {
		detail[k] = v
	}
	names := policy.Names{URIs: []*url.URL{sid.URL()}}
	// JWT-SVIDs may live under policy's 5-minute floor: ask about the names.
	g := grant{kind: grantWorkloadSVID, about: sid.String(), names: names, actor: req.Actor, detail: detail}
	if _, _, err := a.decide(ctx, &g, 0); err != nil {
		return "", time.Time{}, err
	}
	now := a.now()
	exp := now.Add(req.TTL)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: a.jwt.alg, Key: jose.JSONWebKey{Key: a.jwt.signer, KeyID: a.jwt.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", time.Time{}, wrapErr(KindInternal, err, "JWT-SVID signer")
	}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Subject: sid.String(), Audience: req.Audience,
		Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now)}).Serialize()
	if err != nil {
		return "", time.Time{}, wrapErr(KindInternal, err, "sign JWT-SVID")
	}
	detail["expires"] = exp.UTC().Format(time.RFC3339)
	ev := audit.Event{Time: now, Type: audit.TypeJWTSVIDIssued, Actor: req.Actor, Subject: sid.String(), Outcome: "success", Detail: detail}
	if err := a.commit(ctx, store.Issuance{Audit: []audit.Event{ev}}); err != nil {
		return "", time.Time{}, storeErr(err, "record JWT-SVID")
	}
	return tok, exp, nil
}

// jwtAlgorithm is the JWS algorithm for a JWT-SVID signing key.
func jwtAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("ca: unsupported JWT-SVID key %T", pub)
}

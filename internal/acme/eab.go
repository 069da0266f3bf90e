package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-jose/go-jose/v4"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// eabAlgorithms are the MAC algorithms accepted for external account
// binding (RFC 8555, section 7.3.4).
var eabAlgorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

// CreateEABKey makes an external account binding key for an ACME
// provisioner. The key is sealed (AES-256-GCM under a key derived from the
// server's secret) before it is stored; the caller gets it once.
func (s *Server) CreateEABKey(ctx context.Context, provisioner, actor string) (wire.EABKey, error) {
	if err := s.requireACMEProvisioner(ctx, provisioner); err != nil {
		return wire.EABKey{}, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return wire.EABKey{}, err
	}
	k := wire.EABKey{KeyID: store.NewID(), HMACKey: base64.RawURLEncoding.EncodeToString(raw), Provisioner: provisioner, CreatedAt: s.now()}
	sealed, err := s.seal(k.KeyID, raw)
	if err != nil {
		return wire.EABKey{}, err
	}
	ev := audit.Event{Time: k.CreatedAt, Type: "acme.eab.created", Actor: actor, Subject: k.KeyID, Outcome: "success",
		Detail: map[string]string{"provisioner": provisioner}}
	if err := s.st.CreateACMEEABKey(ctx, store.ACMEEABKey{ID: k.KeyID, Provisioner: provisioner, Key: sealed, CreatedAt: k.CreatedAt}, ev); err != nil {
		return wire.EABKey{}, fmt.Errorf("acme: store EAB key: %w", err)
	}
	return k, nil
}

// ListEABKeys lists a provisioner's external account binding keys.
func (s *Server) ListEABKeys(ctx context.Context, provisioner string) ([]wire.EABKeyInfo, error) {
	if err := s.requireACMEProvisioner(ctx, provisioner); err != nil {
		return nil, err
	}
	keys, err := s.st.ListACMEEABKeys(ctx, provisioner)
	if err != nil {
		return nil, fmt.Errorf("acme: list EAB keys: %w", err)
	}
	out := make([]wire.EABKeyInfo, len(keys))
	for i, k := range keys {
		out[i] = wire.EABKeyInfo{KeyID: k.ID, Provisioner: k.Provisioner, BoundAccount: k.BoundAccount, CreatedAt: k.CreatedAt, BoundAt: k.BoundAt}
	}
	return out, nil
}

// ErrNotACMEProvisioner is returned for EAB calls naming a provisioner that
// does not exist or is not of type acme.
var ErrNotACMEProvisioner = errors.New("acme: not an ACME provisioner")

func (s *Server) requireACMEProvisioner(ctx context.Context, name string) error {
	p, _, err := s.ca.Provisioner(ctx, name)
	if err != nil {
		if ca.KindOf(err) == ca.KindNotFound {
			return fmt.Errorf("%w: no provisioner named %q", ErrNotACMEProvisioner, name)
		}
		return err
	}
	if p.Type != "acme" {
		return fmt.Errorf("%w: provisioner %q is of type %s", ErrNotACMEProvisioner, name, p.Type)
	}
	return nil
}

// seal encrypts an EAB key, bound to its id.
func (s *Server) seal(id string, key []byte) ([]byte, error) { return s.sealer.Seal(id, key) }

func (s *Server) unseal(id string, sealed []byte) ([]byte, error) { return s.sealer.Open(id, sealed) }

// verifyEAB checks an externalAccountBinding JWS: HMAC over the account key
// with an unbound key of this provisioner, url equal to newAccount's, no
// nonce. It returns the key id; the store binds it when the account is
// created.
func (s *Server) verifyEAB(r *http.Request, p *provisioner, req *request, raw json.RawMessage) (string, error) {
	bad := func(format string, args ...any) error {
		return unauthorized("external account binding: "+format, args...)
	}
	var f flattenedJWS
	if err := json.Unmarshal(raw, &f); err != nil || f.Protected == nil || f.Payload == nil || f.Signature == nil {
		return "", malformed("external account binding: not a flattened JWS")
	}
	sig, err := jose.ParseSignedJSON(string(raw), eabAlgorithms)
	if err != nil || len(sig.Signatures) != 1 {
		return "", malformed("external account binding: the JWS cannot be parsed or its algorithm is not HS256, HS384 or HS512")
	}
	h := sig.Signatures[0].Protected
	if h.Nonce != "" {
		return "", malformed("external account binding: must not carry a nonce")
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != req.header.URL {
		return "", bad("url %q is not the newAccount URL", u)
	}
	if h.KeyID == "" {
		return "", malformed("external account binding: no kid")
	}
	k, err := s.st.GetACMEEABKey(r.Context(), h.KeyID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.Provisioner != p.name) {
		return "", bad("key %q does not exist", h.KeyID)
	}
	if err != nil {
		return "", storeProblem(err)
	}
	if k.BoundAccount != "" {
		return "", bad("key %q is already bound to an account", h.KeyID)
	}
	hmacKey, err := s.unseal(k.ID, k.Key)
	if err != nil {
		return "", internalProblem("cannot unseal EAB key %s", k.ID)
	}
	payload, err := sig.Verify(hmacKey)
	if err != nil {
		return "", bad("the MAC does not verify with key %q", h.KeyID)
	}
	var inner jose.JSONWebKey
	if err := inner.UnmarshalJSON(payload); err != nil {
		return "", malformed("external account binding: the payload is not a JWK: %v", err)
	}
	innerTP, err1 := thumbprint(&inner)
	outerTP, err2 := thumbprint(req.key)
	if err1 != nil || err2 != nil || innerTP != outerTP {
		return "", bad("the bound key is not the account key")
	}
	return k.ID, nil
}

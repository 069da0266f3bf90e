//go:build cgo

package keys

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

func init() {
	RegisterProvider("pkcs11", func() (Provider, error) {
		return &pkcs11Provider{tokens: map[string]*crypto11.Context{}}, nil
	})
}

// pkcs11Provider keeps keys on PKCS#11 tokens through crypto11: one
// crypto11.Context (a logged-in session pool) per token, opened on first
// use. If a token stops answering — the module was finalized, the device
// removed, the token reset — the next signature reopens its context once
// and tries again (hsmSigner.Sign).
type pkcs11Provider struct {
	mu     sync.Mutex
	tokens map[string]*crypto11.Context
}

// PKCS11Available reports whether this build can use PKCS#11 (it needs
// cgo to load the module).
const PKCS11Available = true

func (p *pkcs11Provider) token(u pkcs11URI) (*crypto11.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.tokens[u.tokenKey()]; ok {
		return c, nil
	}
	pin, err := u.pin()
	if err != nil {
		return nil, err
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: u.ModulePath, TokenLabel: u.Token, TokenSerial: u.Serial, SlotNumber: u.Slot, Pin: pin})
	if err != nil {
		return nil, pkcs11Error("open the token", u, err)
	}
	p.tokens[u.tokenKey()] = c
	return c, nil
}

// drop forgets the token's context and closes it if it is still c; one
// no longer held was closed already (crypto11 panics on a second Close).
func (p *pkcs11Provider) drop(u pkcs11URI, c *crypto11.Context) {
	p.mu.Lock()
	held := p.tokens[u.tokenKey()] == c
	if held {
		delete(p.tokens, u.tokenKey())
	}
	p.mu.Unlock()
	if held {
		_ = c.Close() // already failing; the reopen says what is wrong
	}
}

// pkcs11Error explains the failures people meet, by their PKCS#11 return
// value, without the PIN.
func pkcs11Error(what string, u pkcs11URI, err error) error {
	where := u.ModulePath
	switch {
	case u.Token != "":
		where = fmt.Sprintf("token %q of %s", u.Token, u.ModulePath)
	case u.Serial != "":
		where = fmt.Sprintf("token serial %s of %s", u.Serial, u.ModulePath)
	case u.Slot != nil:
		where = fmt.Sprintf("slot %d of %s", *u.Slot, u.ModulePath)
	}
	var rv pkcs11.Error
	switch {
	case errors.As(err, &rv) && (rv == pkcs11.CKR_PIN_INCORRECT || rv == pkcs11.CKR_PIN_INVALID || rv == pkcs11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("keys: %s: the PIN is wrong for %s (%v)", what, where, err)
	case errors.As(err, &rv) && rv == pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("keys: %s: the PIN of %s is locked (%v)", what, where, err)
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		return fmt.Errorf("keys: %s: there is no %s: %w", what, where, fs.ErrNotExist)
	case strings.Contains(err.Error(), "failed to open module") || strings.Contains(err.Error(), "failed to load") || strings.Contains(err.Error(), "no such file"):
		return fmt.Errorf("keys: %s: cannot load the PKCS#11 module %s: %v", what, u.ModulePath, err)
	}
	return fmt.Errorf("keys: %s (%s): %v", what, where, err)
}

func (p *pkcs11Provider) Generate(ctx context.Context, uri string, kt KeyType) (crypto.Signer, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	u, err := parsePKCS11URI(uri)
	if err != nil {
		return nil, "", err
	}
	c, err := p.token(u)
	if err != nil {
		return nil, "", err
	}
	if existing, err := c.FindKeyPairs(u.ID, label(u)); err != nil {
		return nil, "", pkcs11Error("look for the key", u, err)
	} else if len(existing) > 0 {
		return nil, "", fmt.Errorf("keys: %s already holds a key pair; without --generate meshpki uses it: %w", Redact(uri), fs.ErrExist)
	}
	id := u.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, "", err
		}
	}
	var s crypto11.Signer
	switch kt {
	case ECP256:
		s, err = c.GenerateECDSAKeyPairWithLabel(id, label(u), elliptic.P256())
	case ECP384:
		s, err = c.GenerateECDSAKeyPairWithLabel(id, label(u), elliptic.P384())
	case RSA2048, RSA3072, RSA4096:
		bits := map[KeyType]int{RSA2048: 2048, RSA3072: 3072, RSA4096: 4096}[kt]
		s, err = c.GenerateRSAKeyPairWithLabel(id, label(u), bits)
	default:
		return nil, "", fmt.Errorf("keys: %s keys cannot be kept on a PKCS#11 token by meshpki: use ec-p256, ec-p384 or rsa-2048 to rsa-4096", kt)
	}
	if err != nil {
		return nil, "", pkcs11Error("generate the key", u, err)
	}
	return &hsmSigner{p: p, u: u, pub: s.Public(), s: s, c: c}, uri, nil
}

func (p *pkcs11Provider) Open(ctx context.Context, uri string) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := parsePKCS11URI(uri)
	if err != nil {
		return nil, err
	}
	c, err := p.token(u)
	if err != nil {
		return nil, err
	}
	s, err := findKeyPair(c, u)
	if err != nil {
		return nil, err
	}
	if _, err := TypeOf(s.Public()); err != nil {
		return nil, err
	}
	return &hsmSigner{p: p, u: u, pub: s.Public(), s: s, c: c}, nil
}

func (p *pkcs11Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.tokens {
		_ = c.Close()
		delete(p.tokens, k)
	}
	return nil
}

// findKeyPair finds the one key pair u names: none is an error wrapping
// fs.ErrNotExist, several (one label on two objects) an error saying so.
func findKeyPair(c *crypto11.Context, u pkcs11URI) (crypto11.Signer, error) {
	found, err := c.FindKeyPairs(u.ID, label(u))
	switch {
	case err != nil:
		return nil, pkcs11Error("find the key", u, err)
	case len(found) == 0:
		return nil, fmt.Errorf("keys: no key pair at %s: %w", redactPKCS11(u), fs.ErrNotExist)
	case len(found) > 1:
		return nil, fmt.Errorf("keys: %d key pairs match %s: add id= to the URI to choose one", len(found), redactPKCS11(u))
	}
	return found[0], nil
}

// redactPKCS11 names the key u names without its query.
func redactPKCS11(u pkcs11URI) string {
	s := "pkcs11:"
	switch {
	case u.Token != "":
		s += "token=" + u.Token
	case u.Serial != "":
		s += "serial=" + u.Serial
	case u.Slot != nil:
		s += fmt.Sprintf("slot-id=%d", *u.Slot)
	}
	if u.Object != "" {
		s += ";object=" + u.Object
	}
	return clip(s)
}

// label is the CKA_LABEL to search by, nil when the URI names none.
func label(u pkcs11URI) []byte {
	if u.Object == "" {
		return nil
	}
	return []byte(u.Object)
}

// hsmSigner signs with a key pair on a token. If a signature fails, it
// reopens the token once, finds the same key (by its public key) and tries
// again: a token that came back serves again without a restart, and one
// that did not gives a clean error.
type hsmSigner struct {
	p   *pkcs11Provider
	u   pkcs11URI
	pub crypto.PublicKey

	mu sync.Mutex
	s  crypto11.Signer
	c  *crypto11.Context
}

func (h *hsmSigner) Public() crypto.PublicKey { return h.pub }

func (h *hsmSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.mu.Lock()
	s, c := h.s, h.c
	h.mu.Unlock()
	sig, err := s.Sign(r, digest, opts)
	if err == nil {
		return sig, nil
	}
	h.p.drop(h.u, c)
	c, err2 := h.p.token(h.u)
	if err2 != nil {
		return nil, fmt.Errorf("keys: the HSM did not sign (%v), and reopening it failed: %w", err, err2)
	}
	s, err2 = findKeyPair(c, h.u)
	if err2 != nil || !publicEqual(s.Public(), h.pub) {
		return nil, fmt.Errorf("keys: the HSM did not sign (%v), and the key is not on the reopened token (%v)", err, err2)
	}
	h.mu.Lock()
	h.s, h.c = s, c
	h.mu.Unlock()
	sig, err = s.Sign(r, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("keys: the HSM did not sign: %v", err)
	}
	return sig, nil
}

// GenerateMAC makes an HMAC-SHA256 secret key (256 bits) on the token.
func (p *pkcs11Provider) GenerateMAC(ctx context.Context, uri string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	u, err := parsePKCS11URI(uri)
	if err != nil {
		return "", err
	}
	c, err := p.token(u)
	if err != nil {
		return "", err
	}
	if existing, err := c.FindKeys(u.ID, label(u)); err != nil {
		return "", pkcs11Error("look for the key", u, err)
	} else if len(existing) > 0 {
		return "", fmt.Errorf("keys: %s already holds a secret key: %w", redactPKCS11(u), fs.ErrExist)
	}
	id := u.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return "", err
		}
	}
	if _, err := c.GenerateSecretKeyWithLabel(id, label(u), 256, crypto11.CipherGeneric); err != nil {
		return "", pkcs11Error("generate the MAC key", u, err)
	}
	return uri, nil
}

// OpenMAC returns an HMAC-SHA256 computed on the token with the secret key
// uri names. Like hsmSigner, it reopens the token once when a MAC fails.
func (p *pkcs11Provider) OpenMAC(ctx context.Context, uri string) (MAC, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := parsePKCS11URI(uri)
	if err != nil {
		return nil, err
	}
	m := &hsmMAC{p: p, u: u}
	if _, _, err := m.key(); err != nil {
		return nil, err
	}
	return m, nil
}

// hsmMAC computes HMACs on a token.
type hsmMAC struct {
	p *pkcs11Provider
	u pkcs11URI

	mu sync.Mutex
	k  *crypto11.SecretKey
	c  *crypto11.Context
}

// key returns the secret key, finding it on the token if need be.
func (m *hsmMAC) key() (*crypto11.SecretKey, *crypto11.Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.k != nil {
		return m.k, m.c, nil
	}
	c, err := m.p.token(m.u)
	if err != nil {
		return nil, nil, err
	}
	found, err := c.FindKeys(m.u.ID, label(m.u))
	switch {
	case err != nil:
		return nil, nil, pkcs11Error("find the MAC key", m.u, err)
	case len(found) == 0:
		return nil, nil, fmt.Errorf("keys: no secret key at %s: %w", redactPKCS11(m.u), fs.ErrNotExist)
	case len(found) > 1:
		return nil, nil, fmt.Errorf("keys: %d secret keys match %s: add id= to the URI to choose one", len(found), redactPKCS11(m.u))
	}
	m.k, m.c = found[0], c
	return m.k, m.c, nil
}

func (m *hsmMAC) MAC(data []byte) ([]byte, error) {
	k, c, err := m.key()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMACUnavailable, err)
	}
	sum, err := pkcs11HMAC(k, data)
	if err == nil {
		return sum, nil
	}
	m.p.drop(m.u, c)
	m.mu.Lock()
	m.k, m.c = nil, nil
	m.mu.Unlock()
	if k, _, err = m.key(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMACUnavailable, err)
	}
	if sum, err = pkcs11HMAC(k, data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMACUnavailable, err)
	}
	return sum, nil
}

func pkcs11HMAC(k *crypto11.SecretKey, data []byte) ([]byte, error) {
	h, err := k.NewHMAC(pkcs11.CKM_SHA256_HMAC, 0)
	if err != nil {
		return nil, err
	}
	h.Write(data)
	return h.Sum(nil), nil
}

package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// Sealer encrypts small secrets the server keeps in its store (ACME EAB
// keys, alert channel credentials) with AES-256-GCM under a key derived from
// a server secret, each bound to what it belongs to (its id, as additional
// data), so a sealed value copied to another record does not open.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the sealing key from the server's MAC key for one
// purpose, named by label ("meshpki acme eab seal v1"): the key is the MAC
// of the label, so replicas that share the key open each other's values.
func NewSealer(m MAC, label string) (*Sealer, error) {
	if s, ok := m.(SecretMAC); ok && len(s) < 32 {
		return nil, errors.New("keys: a sealer needs a secret of at least 32 bytes")
	}
	key, err := m.MAC([]byte(label))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to id.
func (s *Sealer) Seal(id string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(id)), nil
}

// Open decrypts what Seal returned for the same id.
func (s *Sealer) Open(id string, sealed []byte) ([]byte, error) {
	if len(sealed) < s.aead.NonceSize() {
		return nil, errors.New("keys: sealed value is too short")
	}
	out, err := s.aead.Open(nil, sealed[:s.aead.NonceSize()], sealed[s.aead.NonceSize():], []byte(id))
	if err != nil {
		return nil, errors.New("keys: sealed value does not open with this server's secret")
	}
	return out, nil
}

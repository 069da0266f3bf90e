package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
)

// ErrWeakKey is wrapped by errors about keys that are too small to accept,
// such as RSA keys below 2048 bits.
var ErrWeakKey = errors.New("keys: key too weak")

// ErrUnsupportedKey is wrapped by errors about keys of an algorithm, curve or
// size that is not one of the supported key types.
var ErrUnsupportedKey = errors.New("keys: unsupported key")

// minRSABits is the smallest RSA modulus accepted anywhere in meshpki.
const minRSABits = 2048

// keyError carries a specific message while matching one of the sentinels
// above with errors.Is.
type keyError struct {
	msg  string
	kind error
}

func (e *keyError) Error() string { return e.msg }
func (e *keyError) Unwrap() error { return e.kind }

func weakKeyError(format string, args ...any) error {
	return &keyError{msg: fmt.Sprintf(format, args...), kind: ErrWeakKey}
}

func unsupportedKeyError(format string, args ...any) error {
	return &keyError{msg: fmt.Sprintf(format, args...), kind: ErrUnsupportedKey}
}

// AllKeyTypes returns every supported key type, the recommended one first.
func AllKeyTypes() []KeyType {
	return []KeyType{ECP256, ECP384, Ed25519, RSA2048, RSA3072, RSA4096}
}

// ParseKeyType returns the key type named by s, ignoring case and
// surrounding spaces.
func ParseKeyType(s string) (KeyType, error) {
	want := strings.ToLower(strings.TrimSpace(s))
	for _, kt := range AllKeyTypes() {
		if string(kt) == want {
			return kt, nil
		}
	}
	return "", unsupportedKeyError("keys: unknown key type %q: valid types are %s", s, keyTypeNames())
}

func keyTypeNames() string {
	all := AllKeyTypes()
	names := make([]string, len(all))
	for i, kt := range all {
		names[i] = string(kt)
	}
	return strings.Join(names, ", ")
}

// Generate creates a new private key of type kt using crypto/rand.
func (kt KeyType) Generate() (crypto.Signer, error) {
	switch kt {
	case ECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate ed25519 key: %w", err)
		}
		return priv, nil
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, unsupportedKeyError("keys: cannot generate unknown key type %q: valid types are %s", string(kt), keyTypeNames())
}

// TypeOf returns the key type of a public key. It returns an error wrapping
// ErrWeakKey for RSA keys below 2048 bits, and one wrapping ErrUnsupportedKey
// for every other key that is not exactly one of the supported types.
func TypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return "", unsupportedKeyError("keys: unsupported key type %T", pub)
		}
		switch pub.Curve {
		case elliptic.P256():
			return ECP256, nil
		case elliptic.P384():
			return ECP384, nil
		}
		return "", unsupportedKeyError("keys: unsupported curve %s: use ec-p256 or ec-p384", pub.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return "", unsupportedKeyError("keys: malformed ed25519 public key of %d bytes", len(pub))
		}
		return Ed25519, nil
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return "", unsupportedKeyError("keys: unsupported key type %T", pub)
		}
		bits := pub.N.BitLen()
		switch {
		case bits < minRSABits:
			return "", weakKeyError("keys: rsa-%d is too weak: RSA keys need at least %d bits", bits, minRSABits)
		case bits == 2048:
			return RSA2048, nil
		case bits == 3072:
			return RSA3072, nil
		case bits == 4096:
			return RSA4096, nil
		}
		return "", unsupportedKeyError("keys: unsupported RSA key size %d bits: use 2048, 3072 or 4096", bits)
	}
	return "", unsupportedKeyError("keys: unsupported key type %T", pub)
}

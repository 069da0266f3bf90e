// Package keys owns CA key material: the supported key types, key generation,
// the passphrase-encrypted on-disk key format, and the Backend interface that
// yields a crypto.Signer so PKCS#11 and KMS backends can be added without
// touching the signing code.
package keys

import (
	"context"
	"crypto"
	"errors"
	"io/fs"
)

// KeyType names a key algorithm and size, as users type it on the command line.
type KeyType string

// The supported key types. RSA below 2048 bits is never accepted.
const (
	ECP256  KeyType = "ec-p256"
	ECP384  KeyType = "ec-p384"
	Ed25519 KeyType = "ed25519"
	RSA2048 KeyType = "rsa-2048"
	RSA3072 KeyType = "rsa-3072"
	RSA4096 KeyType = "rsa-4096"
)

// Backend creates and loads signing keys. Implementations are safe for
// concurrent use. The returned crypto.Signer must be safe for concurrent use.
type Backend interface {
	// Create generates a new key of type kt, persists it under name (never
	// unencrypted) and returns the signer and a reference that Load accepts.
	Create(ctx context.Context, name string, kt KeyType) (crypto.Signer, string, error)
	// Load returns the signer for a reference returned by Create.
	Load(ctx context.Context, ref string) (crypto.Signer, error)
}

// Keystore is where the server keeps every key it holds: the CA's signing
// keys (Backend), the token MAC secret, and the keys it makes for itself by
// name (the JWT-SVID and audit checkpoint keys). The server takes one
// Keystore and asks nothing of where keys live, so a PKCS#11 or KMS backend
// is a Keystore and a change nowhere else.
//
// Implementations report a missing key or secret with an error wrapping
// fs.ErrNotExist, and a name already taken with one wrapping fs.ErrExist.
type Keystore interface {
	Backend
	// CreateSecret generates size random bytes, persists them under name
	// (never unencrypted), and returns them and a reference LoadSecret
	// accepts.
	CreateSecret(ctx context.Context, name string, size int) ([]byte, string, error)
	// LoadSecret returns the secret for a reference CreateSecret returned.
	LoadSecret(ctx context.Context, ref string) ([]byte, error)
	// Ref returns the reference Create returns for a key created under
	// name, so that a key is found again by its name alone.
	Ref(name string) string
}

// LoadOrCreate returns the signing key ks holds under name, creating it of
// type kt when there is none. Two processes doing this at once end with the
// same key: the one whose Create loses the race loads the winner's.
func LoadOrCreate(ctx context.Context, ks Keystore, name string, kt KeyType) (crypto.Signer, error) {
	key, err := ks.Load(ctx, ks.Ref(name))
	if errors.Is(err, fs.ErrNotExist) {
		key, _, err = ks.Create(ctx, name, kt)
		if errors.Is(err, fs.ErrExist) {
			key, err = ks.Load(ctx, ks.Ref(name))
		}
	}
	return key, err
}

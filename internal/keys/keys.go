// Package keys owns CA key material: the supported key types, key generation,
// the passphrase-encrypted on-disk key format, and the Backend interface that
// yields a crypto.Signer so PKCS#11 and KMS backends can be added without
// touching the signing code.
package keys

import (
	"context"
	"crypto"
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

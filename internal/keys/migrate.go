package keys

import (
	"crypto"
	"encoding/pem"
	"fmt"
	"os"
)

// EncryptLegacyPEM writes key in the meshpki format keys were written in
// before encrypted PKCS#8 ("MESHPKI ENCRYPTED PRIVATE KEY", see pem.go). It
// exists so that tests can make the files MigrateKeyFile rewrites.
func EncryptLegacyPEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	return encryptLegacyKeyPEM(key, passphrase, defaultScrypt)
}

func encryptLegacyKeyPEM(key crypto.Signer, passphrase []byte, params scryptParams) ([]byte, error) {
	der, err := marshalPKCS8(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return seal(encryptedKeyBlock, der, passphrase, params)
}

// MigrateKeyFile rewrites a key file in the older meshpki format as
// encrypted PKCS#8 under the same passphrase, atomically and with mode
// 0600, and reports whether it did. A file already in PKCS#8, or holding
// something other than a meshpki-encrypted key, is left as it is. The
// rewritten file is read back before it replaces the old one.
func MigrateKeyFile(path string, passphrase []byte) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("keys: %w", err)
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != encryptedKeyBlock {
		return false, nil
	}
	key, err := ParsePrivateKeyPEM(data, passphrase)
	if err != nil {
		return false, fmt.Errorf("keys: %s: %w", path, err)
	}
	out, err := EncryptPEM(key, passphrase)
	if err != nil {
		return false, err
	}
	back, err := ParsePrivateKeyPEM(out, passphrase)
	if err != nil || !publicEqual(back.Public(), key.Public()) {
		return false, fmt.Errorf("keys: %s: the rewritten key does not read back (%v); the file is unchanged", path, err)
	}
	if err := WriteFile(path, out, 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// publicEqual reports whether two public keys are the same key.
func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

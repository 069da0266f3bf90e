package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/scrypt"
)

// PEM block types of the meshpki encrypted format. Keys were written in it
// before the standard encrypted PKCS#8 (pkcs8.go); it is still read, and
// meshpki ca migrate-keys rewrites such files. Secrets are still written in
// it: they are not keys, and PKCS#8 has no form for them.
const (
	encryptedKeyBlock    = "MESHPKI ENCRYPTED PRIVATE KEY"
	encryptedSecretBlock = "MESHPKI ENCRYPTED SECRET"
)

// PEM header names of the encrypted format, in the order they are bound into
// the additional authenticated data.
const (
	headerKDF     = "KDF"
	headerScryptN = "Scrypt-N"
	headerScryptR = "Scrypt-R"
	headerScryptP = "Scrypt-P"
	headerSalt    = "Salt"
	headerNonce   = "Nonce"
)

var headerOrder = []string{headerKDF, headerScryptN, headerScryptR, headerScryptP, headerSalt, headerNonce}

const (
	kdfScrypt = "scrypt"
	saltSize  = 16
	aeadKey   = 32 // AES-256
	// aadDomain separates this format's AAD from any other use of the key.
	aadDomain = "meshpki encrypted pem v1"
)

// ErrBadPassphrase is returned when an encrypted block does not authenticate:
// the passphrase is wrong, or the file (body or any header) was altered.
var ErrBadPassphrase = errors.New("keys: wrong passphrase or corrupted key file")

// scryptParams are the scrypt cost parameters of one encrypted block.
type scryptParams struct {
	N, R, P int
}

// defaultScrypt is what EncryptPEM and EncryptSecret write: the parameters
// recommended for interactive use, about 32 MiB and tens of milliseconds.
var defaultScrypt = scryptParams{N: 1 << 15, R: 8, P: 1}

// Limits on the parameters accepted when decrypting, so that a crafted file
// cannot make the process spend gigabytes of memory or minutes of CPU. They
// leave 8 times the default memory and 16 times the default work.
const (
	minScryptN      = 1 << 10
	maxScryptN      = 1 << 20
	maxScryptR      = 32
	maxScryptP      = 16
	maxScryptMemory = 256 << 20 // bytes: 128 * N * r; the default is 32 MiB
	maxScryptWork   = 1 << 22   // N * r * p; the default is 1<<18
)

func (p scryptParams) check() error {
	switch {
	case p.N < minScryptN || p.N > maxScryptN || p.N&(p.N-1) != 0:
		return fmt.Errorf("keys: scrypt N=%d must be a power of two from %d to %d", p.N, minScryptN, maxScryptN)
	case p.R < 1 || p.R > maxScryptR:
		return fmt.Errorf("keys: scrypt r=%d must be from 1 to %d", p.R, maxScryptR)
	case p.P < 1 || p.P > maxScryptP:
		return fmt.Errorf("keys: scrypt p=%d must be from 1 to %d", p.P, maxScryptP)
	case int64(128)*int64(p.N)*int64(p.R) > maxScryptMemory:
		return fmt.Errorf("keys: scrypt N=%d r=%d needs more than %d MiB", p.N, p.R, maxScryptMemory>>20)
	case int64(p.N)*int64(p.R)*int64(p.P) > maxScryptWork:
		return fmt.Errorf("keys: scrypt N=%d r=%d p=%d is too costly", p.N, p.R, p.P)
	}
	return nil
}

// EncryptPEM returns key as a standard encrypted PKCS#8 PEM block
// ("ENCRYPTED PRIVATE KEY": PBES2 with scrypt and AES-256-CBC, see
// pkcs8.go), which openssl reads with the passphrase.
func EncryptPEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	return encryptKeyPEM(key, passphrase, pkcs8Scrypt)
}

func encryptKeyPEM(key crypto.Signer, passphrase []byte, params scryptParams) ([]byte, error) {
	der, err := marshalPKCS8(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return encryptPKCS8(der, passphrase, params)
}

// EncryptSecret seals a raw secret with the same scheme as EncryptPEM, in a
// PEM block of type "MESHPKI ENCRYPTED SECRET".
func EncryptSecret(secret, passphrase []byte) ([]byte, error) {
	return seal(encryptedSecretBlock, secret, passphrase, defaultScrypt)
}

// DecryptSecret opens a block written by EncryptSecret. It returns
// ErrBadPassphrase when the block does not authenticate.
func DecryptSecret(data, passphrase []byte) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != encryptedSecretBlock {
		return nil, fmt.Errorf("keys: no %q PEM block found", encryptedSecretBlock)
	}
	return open(block, passphrase)
}

// MarshalPrivateKeyPEM returns key as an unencrypted PKCS#8 "PRIVATE KEY" PEM
// block. The caller must write it with mode 0600.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := marshalPKCS8(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func marshalPKCS8(key crypto.Signer) ([]byte, error) {
	if key == nil {
		return nil, errors.New("keys: nil key")
	}
	if _, err := TypeOf(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keys: %T cannot be exported as PKCS#8: %w", key, err)
	}
	return der, nil
}

// ParsePrivateKeyPEM returns the first private key in data. It accepts the
// encrypted PKCS#8 block and the older meshpki encrypted block (both need
// passphrase; a wrong one yields ErrBadPassphrase) and the unencrypted "PRIVATE KEY" (PKCS#8),
// "EC PRIVATE KEY" (SEC 1) and "RSA PRIVATE KEY" (PKCS#1) blocks. Other
// blocks, such as "EC PARAMETERS" or certificates, are skipped. The key must
// be one of the supported key types (see TypeOf). With an empty passphrase
// an encrypted block is refused before any key derivation work, so parsing
// untrusted input that way is cheap.
func ParsePrivateKeyPEM(data, passphrase []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("keys: no private key PEM block found")
		}
		switch block.Type {
		case encryptedKeyBlock:
			if len(passphrase) == 0 {
				return nil, errors.New("keys: the key is encrypted and no passphrase was given")
			}
			der, err := open(block, passphrase)
			if err != nil {
				return nil, err
			}
			key, err := parseDER(der, x509.ParsePKCS8PrivateKey)
			clear(der)
			return key, err
		case "PRIVATE KEY":
			return parseDER(block.Bytes, x509.ParsePKCS8PrivateKey)
		case "EC PRIVATE KEY":
			if err := refuseLegacyEncryption(block); err != nil {
				return nil, err
			}
			return parseDER(block.Bytes, func(der []byte) (any, error) { return x509.ParseECPrivateKey(der) })
		case "RSA PRIVATE KEY":
			if err := refuseLegacyEncryption(block); err != nil {
				return nil, err
			}
			return parseDER(block.Bytes, func(der []byte) (any, error) { return x509.ParsePKCS1PrivateKey(der) })
		case pkcs8Block:
			der, err := decryptPKCS8(block.Bytes, passphrase)
			if err != nil {
				return nil, err
			}
			key, err := parseDER(der, x509.ParsePKCS8PrivateKey)
			clear(der)
			if err != nil {
				// CBC is not authenticated: a wrong passphrase that happens
				// to leave valid padding shows here.
				return nil, fmt.Errorf("%w (%v)", ErrBadPassphrase, err)
			}
			return key, nil
		}
	}
}

// refuseLegacyEncryption rejects RFC 1421 "Proc-Type: 4,ENCRYPTED" blocks,
// whose encryption is unauthenticated and obsolete.
func refuseLegacyEncryption(block *pem.Block) error {
	if _, ok := block.Headers["Proc-Type"]; ok {
		return fmt.Errorf("keys: legacy encrypted %q blocks are not supported: decrypt it with openssl first", block.Type)
	}
	return nil
}

func parseDER(der []byte, parse func([]byte) (any, error)) (crypto.Signer, error) {
	parsed, err := parse(der)
	if err != nil {
		return nil, fmt.Errorf("keys: parse private key: %w", err)
	}
	var signer crypto.Signer
	switch k := parsed.(type) {
	case *ecdsa.PrivateKey:
		signer = k
	case *rsa.PrivateKey:
		signer = k
	case ed25519.PrivateKey:
		signer = k
	default:
		return nil, unsupportedKeyError("keys: unsupported private key type %T", parsed)
	}
	if _, err := TypeOf(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// seal encrypts plaintext into a PEM block of blockType.
func seal(blockType string, plaintext, passphrase []byte, params scryptParams) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keys: empty passphrase")
	}
	if err := params.check(); err != nil {
		return nil, err
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("keys: read random salt: %w", err)
	}
	aead, err := newAEAD(passphrase, salt, params)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keys: read random nonce: %w", err)
	}
	headers := map[string]string{
		headerKDF:     kdfScrypt,
		headerScryptN: strconv.Itoa(params.N),
		headerScryptR: strconv.Itoa(params.R),
		headerScryptP: strconv.Itoa(params.P),
		headerSalt:    base64.StdEncoding.EncodeToString(salt),
		headerNonce:   base64.StdEncoding.EncodeToString(nonce),
	}
	ciphertext := aead.Seal(nil, nonce, plaintext, additionalData(blockType, headers))
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Headers: headers, Bytes: ciphertext}), nil
}

// open authenticates and decrypts an encrypted block.
func open(block *pem.Block, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keys: empty passphrase")
	}
	if len(block.Headers) != len(headerOrder) {
		return nil, fmt.Errorf("keys: malformed %q block: want exactly the headers %v", block.Type, headerOrder)
	}
	for _, name := range headerOrder {
		if _, ok := block.Headers[name]; !ok {
			return nil, fmt.Errorf("keys: malformed %q block: missing header %s", block.Type, name)
		}
	}
	if kdf := block.Headers[headerKDF]; kdf != kdfScrypt {
		return nil, fmt.Errorf("keys: unsupported KDF %q: only scrypt is supported", kdf)
	}
	var params scryptParams
	for _, field := range []struct {
		name string
		dst  *int
	}{{headerScryptN, &params.N}, {headerScryptR, &params.R}, {headerScryptP, &params.P}} {
		v, err := strconv.Atoi(block.Headers[field.name])
		if err != nil {
			return nil, fmt.Errorf("keys: malformed %q block: header %s is not a number", block.Type, field.name)
		}
		*field.dst = v
	}
	if err := params.check(); err != nil {
		return nil, err
	}
	salt, err := base64.StdEncoding.Strict().DecodeString(block.Headers[headerSalt])
	if err != nil || len(salt) != saltSize {
		return nil, fmt.Errorf("keys: malformed %q block: Salt must be %d base64 bytes", block.Type, saltSize)
	}
	nonce, err := base64.StdEncoding.Strict().DecodeString(block.Headers[headerNonce])
	if err != nil {
		return nil, fmt.Errorf("keys: malformed %q block: Nonce is not base64", block.Type)
	}
	aead, err := newAEAD(passphrase, salt, params)
	if err != nil {
		return nil, err
	}
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("keys: malformed %q block: Nonce must be %d bytes", block.Type, aead.NonceSize())
	}
	plaintext, err := aead.Open(nil, nonce, block.Bytes, additionalData(block.Type, block.Headers))
	if err != nil {
		return nil, ErrBadPassphrase
	}
	return plaintext, nil
}

// newAEAD derives the AES-256-GCM key from passphrase.
func newAEAD(passphrase, salt []byte, params scryptParams) (cipher.AEAD, error) {
	block, err := scryptAES(passphrase, salt, params, aeadKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return aead, nil
}

// scryptAES is AES under a key of keyLen bytes derived from passphrase
// with scrypt.
func scryptAES(passphrase, salt []byte, params scryptParams, keyLen int) (cipher.Block, error) {
	key, err := scrypt.Key(passphrase, salt, params.N, params.R, params.P, keyLen)
	if err != nil {
		return nil, fmt.Errorf("keys: derive key: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return block, nil
}

// additionalData binds the block type and every header value, exactly as
// written, into the GCM tag. Each field is length-prefixed so that no two
// different header sets encode alike.
func additionalData(blockType string, headers map[string]string) []byte {
	var aad []byte
	field := func(s string) {
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(s)))
		aad = append(aad, s...)
	}
	field(aadDomain)
	field(blockType)
	for _, name := range headerOrder {
		field(name)
		field(headers[name])
	}
	return aad
}

// IsEncryptedPEM reports whether data holds an encrypted private key, in
// either format ParsePrivateKeyPEM opens with a passphrase.
func IsEncryptedPEM(data []byte) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if block.Type == pkcs8Block || block.Type == encryptedKeyBlock {
			return true
		}
	}
}

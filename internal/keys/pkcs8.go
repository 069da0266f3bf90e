package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/scrypt"
)

// The standard encrypted key format: a PKCS#8 EncryptedPrivateKeyInfo (RFC
// 5958) under PBES2 (RFC 8018), in a PEM block "ENCRYPTED PRIVATE KEY".
// meshpki writes scrypt (RFC 7914) and AES-256-CBC; it reads scrypt or
// PBKDF2 (HMAC-SHA1, -SHA256 or -SHA512) with AES-128, -192 or -256 in CBC
// mode, which covers what openssl pkcs8 and pkey write. openssl reads what
// meshpki writes with "openssl pkey -in KEY -passin file:PASSFILE".

// pkcs8Block is the PEM type of an encrypted PKCS#8 key.
const pkcs8Block = "ENCRYPTED PRIVATE KEY"

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// pkcs8Scrypt is the scrypt cost meshpki writes: 16 MiB and N = 2^14, the
// parameters openssl itself uses with -scrypt. openssl refuses to derive
// keys needing more than 32 MiB, which N = 2^15, r = 8 just exceeds.
var pkcs8Scrypt = scryptParams{N: 1 << 14, R: 8, P: 1}

// maxPBKDF2Iterations bounds the work a crafted file can ask for when
// read (ten times OWASP's 600,000 for PBKDF2-HMAC-SHA256).
const maxPBKDF2Iterations = 6_000_000

type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type scryptASN1 struct {
	Salt      []byte
	N         int
	R         int
	P         int
	KeyLength int `asn1:"optional"`
}

type pbkdf2ASN1 struct {
	Salt       []byte
	Iterations int
	KeyLength  int                 `asn1:"optional"`
	PRF        algorithmIdentifier `asn1:"optional"`
}

// encryptPKCS8 seals a PKCS#8 PrivateKeyInfo under passphrase with scrypt
// and AES-256-CBC, as a PEM "ENCRYPTED PRIVATE KEY" block.
func encryptPKCS8(der, passphrase []byte, params scryptParams) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keys: empty passphrase")
	}
	if err := params.check(); err != nil {
		return nil, err
	}
	salt := make([]byte, saltSize)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("keys: read random salt: %w", err)
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("keys: read random IV: %w", err)
	}
	block, err := scryptAES(passphrase, salt, params, 32)
	if err != nil {
		return nil, err
	}
	// PKCS#7 padding (RFC 8018 §6.1.1 step 4): 1 to 16 bytes of their count.
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := make([]byte, len(der)+pad)
	copy(plain, der)
	for i := len(der); i < len(plain); i++ {
		plain[i] = byte(pad)
	}
	defer clear(plain)
	ciphertext := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, plain)

	kdf, err := asn1.Marshal(scryptASN1{Salt: salt, N: params.N, R: params.R, P: params.P, KeyLength: 32})
	if err != nil {
		return nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	pbes2, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: algorithmIdentifier{Algorithm: oidScrypt, Parameters: asn1.RawValue{FullBytes: kdf}},
		EncryptionScheme:  algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, err
	}
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: pbes2}},
		EncryptedData: ciphertext,
	})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkcs8Block, Bytes: out}), nil
}

// decryptPKCS8 opens an EncryptedPrivateKeyInfo and returns the PKCS#8
// PrivateKeyInfo inside. A wrong passphrase yields ErrBadPassphrase (CBC
// is not authenticated: a wrong key shows as bad padding or as DER that
// does not parse, and the caller checks the latter).
func decryptPKCS8(der, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keys: the key is encrypted and no passphrase was given")
	}
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) > 0 {
		return nil, errors.New("keys: malformed encrypted PKCS#8 key")
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("keys: encrypted PKCS#8 key uses %v: only PBES2 (scrypt or PBKDF2 with AES-CBC) is supported", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if rest, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil || len(rest) > 0 {
		return nil, errors.New("keys: malformed PBES2 parameters")
	}
	var keyLen int
	switch enc := params.EncryptionScheme.Algorithm; {
	case enc.Equal(oidAES128CBC):
		keyLen = 16
	case enc.Equal(oidAES192CBC):
		keyLen = 24
	case enc.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, fmt.Errorf("keys: encrypted PKCS#8 key uses cipher %v: only AES-CBC is supported", enc)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil || len(rest) > 0 || len(iv) != aes.BlockSize {
		return nil, errors.New("keys: malformed AES-CBC parameters: want a 16-byte IV")
	}
	key, err := pbes2Key(params.KeyDerivationFunc, passphrase, keyLen)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if len(info.EncryptedData) == 0 || len(info.EncryptedData)%aes.BlockSize != 0 {
		return nil, errors.New("keys: malformed encrypted PKCS#8 key: data is not whole AES blocks")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	plain := make([]byte, len(info.EncryptedData))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, info.EncryptedData)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > aes.BlockSize || !bytes.Equal(plain[len(plain)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		clear(plain)
		return nil, ErrBadPassphrase
	}
	return plain[:len(plain)-pad], nil
}

// pbes2Key derives the content-encryption key with the KDF kdf names,
// within bounds on its cost.
func pbes2Key(kdf algorithmIdentifier, passphrase []byte, keyLen int) ([]byte, error) {
	switch {
	case kdf.Algorithm.Equal(oidScrypt):
		var p scryptASN1
		if rest, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil || len(rest) > 0 {
			return nil, errors.New("keys: malformed scrypt parameters")
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, fmt.Errorf("keys: scrypt key length %d does not fit the cipher's %d", p.KeyLength, keyLen)
		}
		params := scryptParams{N: p.N, R: p.R, P: p.P}
		if err := params.check(); err != nil {
			return nil, err
		}
		key, err := scrypt.Key(passphrase, p.Salt, p.N, p.R, p.P, keyLen)
		if err != nil {
			return nil, fmt.Errorf("keys: derive key: %w", err)
		}
		return key, nil
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2ASN1
		if rest, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil || len(rest) > 0 {
			return nil, errors.New("keys: malformed PBKDF2 parameters")
		}
		if p.KeyLength != 0 && p.KeyLength != keyLen {
			return nil, fmt.Errorf("keys: PBKDF2 key length %d does not fit the cipher's %d", p.KeyLength, keyLen)
		}
		if p.Iterations < 1 || p.Iterations > maxPBKDF2Iterations {
			return nil, fmt.Errorf("keys: PBKDF2 iteration count %d is not from 1 to %d", p.Iterations, maxPBKDF2Iterations)
		}
		var h func() hash.Hash
		switch prf := p.PRF.Algorithm; {
		case len(prf) == 0, prf.Equal(oidHMACSHA1):
			h = sha1.New
		case prf.Equal(oidHMACSHA256):
			h = sha256.New
		case prf.Equal(oidHMACSHA512):
			h = sha512.New
		default:
			return nil, fmt.Errorf("keys: PBKDF2 with PRF %v is not supported", prf)
		}
		key, err := pbkdf2.Key(h, string(passphrase), p.Salt, p.Iterations, keyLen)
		if err != nil {
			return nil, fmt.Errorf("keys: derive key: %w", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("keys: encrypted PKCS#8 key uses KDF %v: only scrypt and PBKDF2 are supported", kdf.Algorithm)
}

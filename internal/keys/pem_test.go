package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func encryptForTest(t testing.TB, kt KeyType) []byte {
	t.Helper()
	data, err := encryptLegacyKeyPEM(testKey(t, kt), testPassphrase, testScrypt)
	if err != nil {
		t.Fatalf("encrypt %s: %v", kt, err)
	}
	return data
}

func TestEncryptPEMRoundTripsEveryKeyType(t *testing.T) {
	for _, kt := range AllKeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			data := encryptForTest(t, kt)
			if bytes.Contains(data, []byte("PRIVATE KEY-----\n")) && !bytes.Contains(data, []byte(encryptedKeyBlock)) {
				t.Fatal("output is not the encrypted block")
			}
			got, err := ParsePrivateKeyPEM(data, testPassphrase)
			if err != nil {
				t.Fatalf("ParsePrivateKeyPEM: %v", err)
			}
			if !samePublic(testKey(t, kt).Public(), got.Public()) {
				t.Fatal("decrypted key differs")
			}
		})
	}
}

func TestEncryptPEMNeverRepeatsSaltOrNonce(t *testing.T) {
	a, b := encryptForTest(t, ECP256), encryptForTest(t, ECP256)
	ba, _ := pem.Decode(a)
	bb, _ := pem.Decode(b)
	if ba.Headers["Salt"] == bb.Headers["Salt"] || ba.Headers["Nonce"] == bb.Headers["Nonce"] {
		t.Fatal("two encryptions share a salt or nonce")
	}
}

func TestWrongPassphraseFails(t *testing.T) {
	_, err := ParsePrivateKeyPEM(encryptForTest(t, Ed25519), []byte("wrong"))
	if !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("err = %v, want ErrBadPassphrase", err)
	}
	if err.Error() != "keys: wrong passphrase or corrupted key file" {
		t.Errorf("err = %q", err)
	}
}

func TestEncryptedKeyNeedsPassphrase(t *testing.T) {
	if _, err := ParsePrivateKeyPEM(encryptForTest(t, Ed25519), nil); err == nil {
		t.Fatal("decrypted without a passphrase")
	}
	if _, err := EncryptPEM(testKey(t, Ed25519), nil); err == nil {
		t.Fatal("encrypted with an empty passphrase")
	}
}

// reencode rebuilds an encrypted block after edit changes it.
func reencode(t *testing.T, data []byte, edit func(b *pem.Block)) []byte {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	edit(block)
	return pem.EncodeToMemory(block)
}

func otherBase64(t *testing.T, s string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	raw[0] ^= 1
	return base64.StdEncoding.EncodeToString(raw)
}

func TestTamperingFailsAuthentication(t *testing.T) {
	good := encryptForTest(t, ECP256)
	for _, tc := range []struct {
		name string
		edit func(b *pem.Block)
		// authFails: the change is well-formed, so only the GCM tag catches it.
		authFails bool
	}{
		{"bad-ciphertext-first-byte", func(b *pem.Block) { b.Bytes[0] ^= 1 }, true},
		{"bad-ciphertext-tag", func(b *pem.Block) { b.Bytes[len(b.Bytes)-1] ^= 0x80 }, true},
		{"bad-ciphertext-truncated", func(b *pem.Block) { b.Bytes = b.Bytes[:len(b.Bytes)-1] }, true},
		{"bad-salt", func(b *pem.Block) { b.Headers["Salt"] = otherBase64(t, b.Headers["Salt"]) }, true},
		{"bad-nonce", func(b *pem.Block) { b.Headers["Nonce"] = otherBase64(t, b.Headers["Nonce"]) }, true},
		{"bad-scrypt-n", func(b *pem.Block) { b.Headers["Scrypt-N"] = "2048" }, true},
		{"bad-scrypt-n-leading-zero", func(b *pem.Block) { b.Headers["Scrypt-N"] = "01024" }, true},
		{"bad-scrypt-r", func(b *pem.Block) { b.Headers["Scrypt-R"] = "7" }, true},
		{"bad-scrypt-p", func(b *pem.Block) { b.Headers["Scrypt-P"] = "2" }, true},
		{"bad-block-type", func(b *pem.Block) { b.Type = encryptedSecretBlock }, false},
		{"bad-kdf", func(b *pem.Block) { b.Headers["KDF"] = "pbkdf2" }, false},
		{"bad-extra-header", func(b *pem.Block) { b.Headers["Comment"] = "hi" }, false},
		{"bad-missing-header", func(b *pem.Block) { delete(b.Headers, "Nonce") }, false},
		{"bad-salt-length", func(b *pem.Block) { b.Headers["Salt"] = "AAAA" }, false},
		{"bad-scrypt-n-not-number", func(b *pem.Block) { b.Headers["Scrypt-N"] = "lots" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := reencode(t, good, tc.edit)
			_, err := ParsePrivateKeyPEM(data, testPassphrase)
			if tc.name == "bad-block-type" {
				// The block is no longer a key block; it must not open as a
				// secret either, because the AAD binds the type.
				_, err = DecryptSecret(data, testPassphrase)
			}
			if err == nil {
				t.Fatal("tampered block was accepted")
			}
			if tc.authFails && !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("err = %v, want ErrBadPassphrase", err)
			}
		})
	}
}

func TestAbsurdScryptParametersAreRefusedBeforeDerivation(t *testing.T) {
	good := encryptForTest(t, ECP256)
	for _, tc := range []struct{ header, value string }{
		{"Scrypt-N", "2097152"}, // 2^21
		{"Scrypt-N", "1073741824"},
		{"Scrypt-N", "3000"}, // not a power of two
		{"Scrypt-N", "16"},   // below the floor
		{"Scrypt-R", "1000"},
		{"Scrypt-R", "0"},
		{"Scrypt-P", "64"},
		{"Scrypt-P", "-1"},
	} {
		data := reencode(t, good, func(b *pem.Block) { b.Headers[tc.header] = tc.value })
		_, err := ParsePrivateKeyPEM(data, testPassphrase)
		if err == nil || errors.Is(err, ErrBadPassphrase) || !strings.Contains(err.Error(), "scrypt") {
			t.Errorf("%s=%s: err = %v, want a scrypt parameter error", tc.header, tc.value, err)
		}
	}
	// Within each bound, but too costly together.
	if err := (scryptParams{N: 1 << 20, R: 8, P: 1}).check(); err == nil {
		t.Error("1 GiB of scrypt memory was accepted")
	}
	if err := (scryptParams{N: 1 << 16, R: 8, P: 16}).check(); err == nil {
		t.Error("N*r*p = 2^23 was accepted")
	}
	if err := (scryptParams{N: 1 << 20, R: 1, P: 1}).check(); err != nil {
		t.Errorf("N=2^20 r=1 refused: %v", err)
	}
	if err := defaultScrypt.check(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

func TestParsePlainPEMForms(t *testing.T) {
	ec := testKey(t, ECP384).(*ecdsa.PrivateKey)
	rsaKey := testKey(t, RSA2048).(*rsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}})
	for _, tc := range []struct {
		name string
		data []byte
		want KeyType
	}{
		{"good-sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ECP384},
		{"good-sec1-after-ec-parameters", append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), ECP384},
		{"good-pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), RSA2048},
	} {
		got, err := ParsePrivateKeyPEM(tc.data, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if kt, _ := TypeOf(got.Public()); kt != tc.want {
			t.Errorf("%s: type %s, want %s", tc.name, kt, tc.want)
		}
	}
	for _, kt := range AllKeyTypes() {
		data, err := MarshalPrivateKeyPEM(testKey(t, kt))
		if err != nil {
			t.Fatalf("MarshalPrivateKeyPEM(%s): %v", kt, err)
		}
		if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
			t.Fatalf("%s: not a PKCS#8 block:\n%s", kt, data[:40])
		}
		got, err := ParsePrivateKeyPEM(data, nil)
		if err != nil || !samePublic(testKey(t, kt).Public(), got.Public()) {
			t.Errorf("PKCS#8 %s round trip: %v", kt, err)
		}
	}
}

func TestParseRefusesBadPEM(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPKCS8, err := x509.MarshalPKCS8PrivateKey(weak)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		is   error
	}{
		{"bad-empty", nil, nil},
		{"bad-certificate-only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), nil},
		{"bad-pkcs8-garbage", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), nil},
		{"bad-weak-rsa", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: weakPKCS8}), ErrWeakKey},
		{"bad-weak-rsa-pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)}), ErrWeakKey},
		{"bad-pkcs8-encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), nil},
		{"bad-legacy-encrypted", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}}), nil},
	} {
		_, err := ParsePrivateKeyPEM(tc.data, testPassphrase)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.is)
		}
	}
	if _, err := MarshalPrivateKeyPEM(weak); !errors.Is(err, ErrWeakKey) {
		t.Errorf("MarshalPrivateKeyPEM(weak) err = %v, want ErrWeakKey", err)
	}
}

func TestSecretRoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	data, err := EncryptSecret(secret, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, secret) {
		t.Fatal("secret appears in the clear")
	}
	got, err := DecryptSecret(data, testPassphrase)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("DecryptSecret = %q, %v", got, err)
	}
	if _, err := DecryptSecret(data, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("wrong passphrase: err = %v", err)
	}
	if _, err := DecryptSecret(encryptForTest(t, ECP256), testPassphrase); err == nil {
		t.Error("a key block opened as a secret")
	}
	if _, err := ParsePrivateKeyPEM(data, testPassphrase); err == nil {
		t.Error("a secret block parsed as a key")
	}
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	for _, kt := range []KeyType{ECP256, Ed25519, RSA2048} {
		f.Add(encryptForTest(f, kt))
		plain, err := MarshalPrivateKeyPEM(testKey(f, kt))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(plain)
	}
	sec1, _ := x509.MarshalECPrivateKey(testKey(f, ECP256).(*ecdsa.PrivateKey))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add([]byte("-----BEGIN MESHPKI ENCRYPTED PRIVATE KEY-----\nKDF: scrypt\n\nAAAA\n-----END MESHPKI ENCRYPTED PRIVATE KEY-----\n"))
	for _, kt := range []KeyType{ECP256, RSA2048} {
		data, err := encryptKeyPEM(testKey(f, kt), testPassphrase, testScrypt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParsePrivateKeyPEM(data, testPassphrase)
		if (key == nil) == (err == nil) {
			t.Fatalf("key %v with err %v", key, err)
		}
		if err == nil {
			if _, err := TypeOf(key.Public()); err != nil {
				t.Fatalf("accepted an unsupported key: %v", err)
			}
		}
	})
}

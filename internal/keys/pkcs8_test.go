package keys

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EncryptPEM writes PBES2 with scrypt at openssl's own -scrypt cost and
// AES-256-CBC, a fresh salt and IV each time.
func TestEncryptPEMWritesStandardPKCS8(t *testing.T) {
	data, err := EncryptPEM(testKey(t, ECP256), testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "ENCRYPTED PRIVATE KEY" || len(block.Headers) != 0 {
		t.Fatalf("block %v", block)
	}
	var info encryptedPrivateKeyInfo
	var params pbes2Params
	var kdf scryptASN1
	var iv []byte
	for _, step := range []struct {
		der []byte
		v   any
	}{{block.Bytes, &info}, {nil, &params}, {nil, &kdf}, {nil, &iv}} {
		der := step.der
		switch step.v.(type) {
		case *pbes2Params:
			der = info.Algorithm.Parameters.FullBytes
		case *scryptASN1:
			der = params.KeyDerivationFunc.Parameters.FullBytes
		case *[]byte:
			der = params.EncryptionScheme.Parameters.FullBytes
		}
		if rest, err := asn1.Unmarshal(der, step.v); err != nil || len(rest) > 0 {
			t.Fatalf("%T: %v", step.v, err)
		}
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) || !params.KeyDerivationFunc.Algorithm.Equal(oidScrypt) || !params.EncryptionScheme.Algorithm.Equal(oidAES256CBC) {
		t.Errorf("algorithms %v %v %v", info.Algorithm.Algorithm, params.KeyDerivationFunc.Algorithm, params.EncryptionScheme.Algorithm)
	}
	if kdf.N != 16384 || kdf.R != 8 || kdf.P != 1 || kdf.KeyLength != 32 || len(kdf.Salt) != 16 || len(iv) != 16 {
		t.Errorf("scrypt %+v, IV %d bytes", kdf, len(iv))
	}
	again, _ := EncryptPEM(testKey(t, ECP256), testPassphrase)
	if bytes.Equal(data, again) {
		t.Error("two encryptions of one key are the same")
	}
	if _, err := ParsePrivateKeyPEM(data, []byte("not the passphrase")); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("a wrong passphrase: %v", err)
	}
	if _, err := ParsePrivateKeyPEM(data, nil); err == nil || !strings.Contains(err.Error(), "no passphrase") {
		t.Errorf("no passphrase: %v", err)
	}
}

func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is needed")
		}
		t.Skip("openssl is not installed")
	}
	return path
}

// openssl reads every key type meshpki writes, with the passphrase from a
// file; and meshpki reads what openssl writes with its defaults (PBKDF2)
// and with -scrypt, in each AES size.
func TestPKCS8InteropWithOpenSSL(t *testing.T) {
	openssl := requireOpenSSL(t)
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, testPassphrase, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kt := range AllKeyTypes() {
		key := testKey(t, kt)
		data, err := EncryptPEM(key, testPassphrase)
		if err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(dir, string(kt)+".key")
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(openssl, "pkey", "-in", in, "-passin", "file:"+pass, "-pubout").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: openssl pkey: %v\n%s", kt, err, out)
		}
		want := marshalPublicPEM(t, key)
		if !bytes.Equal(out, want) {
			t.Errorf("%s: openssl reads another public key:\n%s\nwant\n%s", kt, out, want)
		}
		if out, err := exec.Command(openssl, "pkey", "-in", in, "-passin", "pass:wrong", "-noout").CombinedOutput(); err == nil {
			t.Errorf("%s: openssl read it with a wrong passphrase: %s", kt, out)
		}
	}

	plain := filepath.Join(dir, "plain.key")
	key := testKey(t, RSA2048)
	data, _ := MarshalPrivateKeyPEM(key)
	if err := os.WriteFile(plain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-v2", "aes-256-cbc"},
		{"-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA512"},
		{"-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA1"},
		{"-v2", "aes-256-cbc", "-scrypt"},
	} {
		cmd := append([]string{"pkcs8", "-topk8", "-in", plain, "-passout", "file:" + pass}, args...)
		out, err := exec.Command(openssl, cmd...).Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		got, err := ParsePrivateKeyPEM(out, testPassphrase)
		if err != nil {
			t.Errorf("openssl %v: %v", args, err)
			continue
		}
		if !samePublic(key.Public(), got.Public()) {
			t.Errorf("openssl %v: another key", args)
		}
		if _, err := ParsePrivateKeyPEM(out, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
			t.Errorf("openssl %v with a wrong passphrase: %v", args, err)
		}
	}
	// DES and the PKCS#5 v1 schemes are refused by name.
	out, err := exec.Command(openssl, "pkcs8", "-topk8", "-in", plain, "-passout", "file:"+pass, "-v1", "PBE-SHA1-3DES").Output()
	if err == nil {
		if _, err := ParsePrivateKeyPEM(out, testPassphrase); err == nil || !strings.Contains(err.Error(), "only PBES2") {
			t.Errorf("a PKCS#5 v1 key: %v", err)
		}
	}
}

// A key file in the older format is rewritten as PKCS#8 that reads back as
// the same key; PKCS#8 files and other files are left alone; a wrong
// passphrase changes nothing.
func TestMigrateKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, ECP384)
	legacy, err := encryptLegacyKeyPEM(key, testPassphrase, testScrypt)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "int-1.key")
	if err := os.WriteFile(path, legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := MigrateKeyFile(path, []byte("wrong")); changed || !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("a wrong passphrase: %v, %v", changed, err)
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, legacy) {
		t.Fatal("a failed migration changed the file")
	}
	if changed, err := MigrateKeyFile(path, testPassphrase); !changed || err != nil {
		t.Fatalf("migrate: %v, %v", changed, err)
	}
	data, _ := os.ReadFile(path)
	got, err := ParsePrivateKeyPEM(data, testPassphrase)
	if !strings.HasPrefix(string(data), "-----BEGIN ENCRYPTED PRIVATE KEY-----") || err != nil || !samePublic(got.Public(), key.Public()) {
		t.Fatalf("after migration: %v\n%.40s", err, data)
	}
	assertMode(t, path, 0o600)
	if changed, err := MigrateKeyFile(path, testPassphrase); changed || err != nil {
		t.Fatalf("migrated twice: %v, %v", changed, err)
	}
	other := filepath.Join(dir, "token.secret")
	secret, _ := EncryptSecret([]byte("0123456789abcdef0123456789abcdef"), testPassphrase)
	if err := os.WriteFile(other, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := MigrateKeyFile(other, testPassphrase); changed || err != nil {
		t.Fatalf("a secret: %v, %v", changed, err)
	}
}

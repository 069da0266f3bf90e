package keys

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestParseKeyTypeIgnoresCase(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want KeyType
	}{
		{"ec-p256", ECP256},
		{"EC-P384", ECP384},
		{"Ed25519", Ed25519},
		{" rsa-2048 ", RSA2048},
		{"RSA-3072", RSA3072},
		{"rsa-4096", RSA4096},
	} {
		got, err := ParseKeyType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseKeyTypeErrorListsValidNames(t *testing.T) {
	for _, in := range []string{"", "rsa-1024", "p256", "ec-p521"} {
		_, err := ParseKeyType(in)
		if err == nil {
			t.Fatalf("ParseKeyType(%q) succeeded", in)
		}
		for _, kt := range AllKeyTypes() {
			if !strings.Contains(err.Error(), string(kt)) {
				t.Errorf("error %q does not list %s", err, kt)
			}
		}
		if !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("error %q does not wrap ErrUnsupportedKey", err)
		}
	}
}

func TestGenerateMakesEachType(t *testing.T) {
	for _, kt := range AllKeyTypes() {
		got, err := TypeOf(testKey(t, kt).Public())
		if err != nil || got != kt {
			t.Errorf("TypeOf(generated %s) = %q, %v", kt, got, err)
		}
	}
	if _, err := KeyType("dsa-1024").Generate(); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("Generate of an unknown type: err = %v, want ErrUnsupportedKey", err)
	}
}

func TestTypeOfRejectsWeakRSA(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, err = TypeOf(&weak.PublicKey)
	if !errors.Is(err, ErrWeakKey) {
		t.Fatalf("err = %v, want ErrWeakKey", err)
	}
	const want = "keys: rsa-1024 is too weak: RSA keys need at least 2048 bits"
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestTypeOfRejectsUnsupportedKeys(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	odd := new(big.Int).Lsh(big.NewInt(1), 2559) // a 2560-bit modulus
	for name, pub := range map[string]any{
		"ecdsa P-521":        &p521.PublicKey,
		"x25519":             x25519.PublicKey(),
		"rsa-2560":           &rsa.PublicKey{N: odd, E: 65537},
		"nil":                nil,
		"nil ecdsa":          (*ecdsa.PublicKey)(nil),
		"nil rsa":            (*rsa.PublicKey)(nil),
		"short ed25519":      ed25519.PublicKey{1, 2, 3},
		"private not public": p521,
	} {
		if kt, err := TypeOf(pub); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: TypeOf = %q, %v; want ErrUnsupportedKey", name, kt, err)
		}
	}
	if _, err := TypeOf(&p521.PublicKey); !strings.Contains(err.Error(), "unsupported curve P-521") {
		t.Errorf("P-521 error %q does not name the curve", err)
	}
}

package keys

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
)

// testScrypt keeps tests fast; the format and code path are the same as with
// the defaults.
var testScrypt = scryptParams{N: minScryptN, R: 8, P: 1}

var testPassphrase = []byte("correct horse battery staple")

var (
	testKeysMu sync.Mutex
	testKeys   = map[KeyType]crypto.Signer{}
)

// testKey returns a key of type kt shared by all tests, since RSA keys are
// slow to generate.
func testKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	if k, ok := testKeys[kt]; ok {
		return k
	}
	k, err := kt.Generate()
	if err != nil {
		t.Fatalf("generate %s: %v", kt, err)
	}
	testKeys[kt] = k
	return k
}

func samePublic(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// marshalPublicPEM is key's public key as openssl pkey -pubout prints it.
func marshalPublicPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

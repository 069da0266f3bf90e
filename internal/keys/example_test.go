package keys_test

import (
	"fmt"
	"log"

	"github.com/meshpki/meshpki/internal/keys"
)

func ExampleEncryptPEM() {
	kt, err := keys.ParseKeyType("EC-P256")
	if err != nil {
		log.Fatal(err)
	}
	key, err := kt.Generate()
	if err != nil {
		log.Fatal(err)
	}
	passphrase := []byte("example passphrase")
	encrypted, err := keys.EncryptPEM(key, passphrase)
	if err != nil {
		log.Fatal(err)
	}
	// Write with keys.WriteFileExclusive(path, encrypted, 0o600).

	loaded, err := keys.ParsePrivateKeyPEM(encrypted, passphrase)
	if err != nil {
		log.Fatal(err)
	}
	loadedType, _ := keys.TypeOf(loaded.Public())
	fmt.Println(loadedType)

	_, err = keys.ParsePrivateKeyPEM(encrypted, []byte("guess"))
	fmt.Println(err)
	// Output:
	// ec-p256
	// keys: wrong passphrase or corrupted key file
}

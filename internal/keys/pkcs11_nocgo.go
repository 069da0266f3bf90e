//go:build !cgo

package keys

import "errors"

// PKCS11Available reports whether this build can use PKCS#11 (it needs
// cgo to load the module).
const PKCS11Available = false

func init() {
	RegisterProvider("pkcs11", func() (Provider, error) {
		return nil, errors.New("keys: PKCS#11 needs the cgo build of meshpki (CGO_ENABLED=1 go build ./cmd/meshpki): this binary was built without cgo and cannot load a PKCS#11 module")
	})
}

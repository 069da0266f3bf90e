package keys

import (
	"strings"
	"testing"
)

// FuzzKeyURI feeds the PKCS#11 and AWS KMS URI parsers: they never panic,
// and what they accept keeps their promises (a module path, one way to
// choose the token, a key named; no host and an http(s) endpoint).
func FuzzKeyURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=meshpki;object=int-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/meshpki/pin",
		"pkcs11:serial=1234;id=%01%02?module-path=/m.so",
		"pkcs11:slot-id=0;object=a;type=private?module-path=/m.so&pin-value=1",
		"awskms:///alias/meshpki-int?region=eu-west-1",
		"awskms:///1234abcd-12ab-34cd-56ef-1234567890ab?region=eu-west-1&endpoint=https%3A%2F%2Fkms.internal",
		"awskms://host/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if u, err := parsePKCS11URI(uri); err == nil {
			choices := 0
			for _, set := range []bool{u.Token != "", u.Serial != "", u.Slot != nil} {
				if set {
					choices++
				}
			}
			if u.ModulePath == "" || choices != 1 || (u.Object == "" && len(u.ID) == 0) {
				t.Fatalf("accepted %q as %+v", uri, u)
			}
		}
		if k, err := parseAWSKMSURI(uri); err == nil {
			if k.Endpoint != "" && !strings.HasPrefix(k.Endpoint, "http") {
				t.Fatalf("accepted endpoint %q", k.Endpoint)
			}
		}
		_, _ = SuccessorURI(uri, "next")
		_ = Redact(uri)
	})
}

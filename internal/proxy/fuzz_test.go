package proxy

import (
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// FuzzParseRule: never a panic; an accepted rule prints as an entry that
// parses back to itself.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"spiffe://td/ns/app", "spiffe://td/ns/*", "spiffe://td", "dns:web.internal", "spiffe://td/*", "dns:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		again, err := ParseRule(r.String())
		if err != nil || again != r {
			t.Fatalf("%q → %v → %q → %v, %v", s, r, r.String(), again, err)
		}
		// Matching never panics, whatever the peer carries.
		_ = Authorizer{r}.allows(spiffeIDOrZero(s), []string{s})
	})
}

func spiffeIDOrZero(s string) spiffeid.ID {
	u, err := url.Parse(s)
	if err != nil {
		return spiffeid.ID{}
	}
	id, _ := x509svid.IDFromCert(&x509.Certificate{URIs: []*url.URL{u}})
	return id
}

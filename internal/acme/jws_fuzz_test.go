package acme

import (
	"testing"
)

// FuzzParseJWS feeds arbitrary request bodies to the JWS parser: it must
// never panic, and whatever it accepts must have a url, an accepted
// algorithm and exactly one of jwk and kid.
func FuzzParseJWS(f *testing.F) {
	f.Add([]byte(`{"protected":"eyJhbGciOiJFUzI1NiIsIm5vbmNlIjoibiIsInVybCI6InUiLCJraWQiOiJrIn0","payload":"","signature":"AAAA"}`))
	f.Add([]byte(`{"protected":"eyJhbGciOiJub25lIn0","payload":"e30","signature":""}`))
	f.Add([]byte(`{"protected":"e30","payload":"e30","signature":"","header":{}}`))
	f.Add([]byte(`eyJhbGciOiJFUzI1NiJ9.e30.c2ln`))
	f.Add([]byte(`{"protected":"eyJhbGciOiJFUzI1NiIsImp3ayI6eyJrdHkiOiJFQyIsImNydiI6IlAtMjU2IiwieCI6IkFBIiwieSI6IkFBIn0sInVybCI6InUifQ","payload":"","signature":"AA"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, prob := parseJWS(body)
		if prob != nil {
			if p != nil || prob.Type == "" || prob.Status == 0 {
				t.Fatalf("refusal without a typed problem: %+v", prob)
			}
			return
		}
		if p.header.URL == "" || !acceptedAlg(p.header.Alg) || (p.jwk != nil) == (p.header.KID != "") {
			t.Fatalf("accepted a JWS it should refuse: %+v", p.header)
		}
	})
}

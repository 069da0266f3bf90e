package revocation

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// A nonce of 1 to 32 octets comes back in a response that still verifies;
// longer ones, and requests without, get the shared response.
func TestOCSPNonce(t *testing.T) {
	o, req, leaf, issuer := ocspFixture(t)
	plain := o.Respond(context.Background(), req)
	for _, n := range []int{1, 16, 32, 33} {
		nonce := bytes.Repeat([]byte{0xa5}, n)
		raw := withRequestNonce(t, req, nonce)
		resp := o.Respond(context.Background(), raw)
		parsed, err := ocsp.ParseResponseForCert(resp, leaf, issuer)
		if err != nil || parsed.Status != ocsp.Good {
			t.Fatalf("nonce of %d: %v", n, err)
		}
		echoed := bytes.Contains(resp, append([]byte{0x04, byte(n)}, nonce...))
		if echoed != (n <= 32) {
			t.Errorf("nonce of %d octets echoed: %v", n, echoed)
		}
		if n > 32 && !bytes.Equal(resp, plain) {
			t.Errorf("a %d-octet nonce changed the response", n)
		}
	}
}

// FuzzOCSPRequest feeds arbitrary requests to the responder: it answers
// every one with an OCSP response and never panics, and a nonce it echoes
// is one the request carried.
func FuzzOCSPRequest(f *testing.F) {
	o, req, _, _ := ocspFixture(f)
	f.Add(req)
	f.Add(withRequestNonce(f, req, []byte("0123456789abcdef")))
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	f.Add([]byte("not an OCSP request"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := o.Respond(context.Background(), raw)
		if _, err := ocsp.ParseResponse(resp, nil); err != nil {
			var re ocsp.ResponseError
			if !errors.As(err, &re) {
				// A successful response for another issuer's request
				// cannot be checked without it; only its shape matters.
				if len(resp) == 0 || resp[0] != 0x30 {
					t.Fatalf("not an OCSP response: %x", resp)
				}
			}
		}
		if nonce := requestNonce(raw); nonce != nil && len(nonce) > maxNonce+2 {
			t.Fatalf("a nonce of %d bytes", len(nonce))
		}
	})
}

// withRequestNonce adds requestExtensions with a nonce to a DER
// OCSPRequest that has none.
func withRequestNonce(f testing.TB, req, nonce []byte) []byte {
	f.Helper()
	var outer struct {
		TBS struct {
			Raw  asn1.RawContent
			List asn1.RawValue
		}
	}
	if _, err := asn1.Unmarshal(req, &outer); err != nil {
		f.Fatal(err)
	}
	value, _ := asn1.Marshal(nonce)
	ext, _ := asn1.Marshal([]pkix.Extension{{Id: oidOCSPNonce, Value: value}})
	exts, _ := asn1.Marshal(asn1.RawValue{Class: 2, Tag: 2, IsCompound: true, Bytes: ext})
	tbs, _ := asn1.Marshal(asn1.RawValue{Tag: 16, IsCompound: true, Bytes: append(append([]byte{}, outer.TBS.List.FullBytes...), exts...)})
	out, _ := asn1.Marshal(asn1.RawValue{Tag: 16, IsCompound: true, Bytes: tbs})
	return out
}

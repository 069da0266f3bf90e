package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
)

// FuzzParseCSR feeds arbitrary bytes to the CSR parser of the issuance path:
// it must never panic, and every failure must be a bad_csr or bad_key Error.
func FuzzParseCSR(f *testing.F) {
	key, err := keys.ECP256.Generate()
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"a.example"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("not pem"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, kt, err := parseCSR(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Kind != KindBadCSR && e.Kind != KindBadKey) {
				t.Fatalf("parseCSR error %v is not a bad CSR or bad key Error", err)
			}
			return
		}
		if csr == nil || kt == "" {
			t.Fatal("parseCSR succeeded without a CSR or key type")
		}
		if csr.CheckSignature() != nil {
			t.Fatal("parseCSR accepted a CSR whose signature fails")
		}
	})
}

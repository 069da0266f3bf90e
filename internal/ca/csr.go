package ca

import (
	"crypto/x509"
	"encoding/pem"

	"github.com/meshpki/meshpki/internal/keys"
)

// The one CSR parser: every front door's request reaches the issuance path
// through parseCSR (PEM: /v1/sign, /v1/renew) or parseCSRDER (DER: ACME
// finalize, SPIFFE SVID minting). Both check the CSR's signature and that
// its key is of a type keys.TypeOf accepts; FuzzParseCSR fuzzes them.

// parseCSR decodes a PEM CSR, checks its signature and its key type.
// ParseCSRPEM parses a PEM certificate request and checks its signature,
// with the errors the issuance path gives.
func ParseCSRPEM(data []byte) (*x509.CertificateRequest, error) {
	csr, _, err := parseCSR(data)
	return csr, err
}

func parseCSR(data []byte) (*x509.CertificateRequest, keys.KeyType, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", errorf(KindBadCSR, "the CSR is not PEM encoded")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, "", errorf(KindBadCSR, "expected a PEM CERTIFICATE REQUEST, got %q", block.Type)
	}
	return parseCSRDER(block.Bytes)
}

// parseCSRDER is parseCSR for a DER request.
func parseCSRDER(der []byte) (*x509.CertificateRequest, keys.KeyType, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, "", errorf(KindBadCSR, "the CSR cannot be parsed: %v", err)
	}
	kt, err := keys.TypeOf(csr.PublicKey)
	if err != nil {
		return nil, "", wrapErr(KindBadKey, err, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", errorf(KindBadCSR, "the CSR's signature does not verify: %v", err)
	}
	return csr, kt, nil
}

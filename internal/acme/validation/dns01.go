package validation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
)

// DNS01 checks a dns-01 challenge (RFC 8555, section 8.4): a TXT record at
// _acme-challenge.<id> must hold the unpadded base64url SHA-256 digest of
// keyAuthorization. id must be a DNS name with any wildcard already
// stripped. CNAMEs are followed as far as the resolver returns them.
// Errors are as for [Validator.Validate].
func (v *Validator) DNS01(ctx context.Context, id Identifier, keyAuthorization string) error {
	return v.attempt(ctx, ChallengeDNS01, id, func(ctx context.Context) error {
		return v.dns01(ctx, id, keyAuthorization)
	})
}

func (v *Validator) dns01(ctx context.Context, id Identifier, keyAuthorization string) error {
	if _, err := checkIdentifier(ChallengeDNS01, id); err != nil {
		return err
	}
	name := "_acme-challenge." + id.Value
	records, err := v.resolver.LookupTXT(ctx, fqdn(name))
	if err != nil {
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			return failf(TypeUnauthorized, err, "dns-01: no TXT record at %s", name)
		case isTimeout(err):
			return failf(TypeDNS, err, "dns-01: looking up TXT at %s: timed out after %s", name, v.timeout)
		case errors.As(err, &de):
			return failf(TypeDNS, err, "dns-01: looking up TXT at %s: %s", name, describeDNSErr(de))
		}
		return failf(TypeDNS, err, "dns-01: looking up TXT at %s: %v", name, err)
	}
	if len(records) == 0 {
		return failf(TypeUnauthorized, nil, "dns-01: no TXT record at %s", name)
	}
	digest := sha256.Sum256([]byte(keyAuthorization))
	want := []byte(base64.RawURLEncoding.EncodeToString(digest[:]))
	for _, record := range records {
		if subtle.ConstantTimeCompare([]byte(record), want) == 1 {
			return nil
		}
	}
	if len(records) == 1 {
		return failf(TypeIncorrectResponse, nil, "dns-01: the TXT record at %s is %q, not the key authorization digest", name, clip(records[0], 128))
	}
	return failf(TypeIncorrectResponse, nil, "dns-01: none of the %d TXT records at %s is the key authorization digest (first: %q)", len(records), name, clip(records[0], 128))
}

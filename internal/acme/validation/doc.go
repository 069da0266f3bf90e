// Package validation checks ACME challenges against the network: http-01
// (RFC 8555, section 8.3), dns-01 (RFC 8555, section 8.4) and tls-alpn-01
// (RFC 8737), for DNS names and for IP addresses (RFC 8738).
//
// It does no storage and keeps no state machine: a caller hands a
// [Validator] one challenge and learns whether the identifier's owner
// answered it. A failed check is an [*Error] whose Type is the RFC 8555
// problem type (without the "urn:ietf:params:acme:error:" prefix) and whose
// Detail is a sentence fit to show the ACME client.
//
// Usage:
//
//	v := validation.New(validation.Config{Resolver: "10.0.0.53:53"})
//	err := v.Validate(ctx, validation.ChallengeHTTP01,
//		validation.Identifier{Type: validation.IdentifierDNS, Value: "app.internal.example"},
//		token, keyAuthorization)
//	var verr *validation.Error
//	switch {
//	case err == nil:
//		// valid
//	case errors.As(err, &verr):
//		// invalid: report verr.Type and verr.Detail to the client
//	default:
//		// ctx ended first: the attempt says nothing either way
//	}
package validation

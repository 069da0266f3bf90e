// Package api owns the CA's JSON HTTP API (docs/API.md): routing, request
// decoding with size and field limits, authentication of admins and
// certificate holders from the verified TLS client certificate, the one
// mapping from errors to HTTP status and {"error":{"code","message"}}, and
// the Prometheus metrics of every request.
package api

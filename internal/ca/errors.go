package ca

import (
	"errors"
	"fmt"
)

// Kind classifies an issuance error so that each front door (JSON API, ACME,
// agent API) can map it to its own status code in one place.
type Kind int

// The kinds of Error.
const (
	KindInternal     Kind = iota // the CA failed; nothing was issued
	KindBadRequest               // malformed input
	KindBadCSR                   // CSR not parseable or its signature fails
	KindBadKey                   // weak or unsupported subject key
	KindUnauthorized             // missing, bad, expired or replayed credential
	KindForbidden                // valid credential, but policy denies
	KindNotFound                 // no such certificate or provisioner
	KindConflict                 // already exists or already revoked
	KindUnavailable              // the store cannot be reached
)

var kindNames = [...]string{"internal", "bad request", "bad CSR", "bad key", "unauthorized", "forbidden", "not found", "conflict", "unavailable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is an issuance error that knows its Kind. Msg is safe to show to the
// client; Err, if set, is the underlying cause for logs.
type Error struct {
	Kind Kind
	Msg  string
	// Rule is the policy rule that decided a KindForbidden error, if any.
	Rule string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Kind == KindInternal {
		return "ca: " + e.Msg + ": " + e.Err.Error()
	}
	return "ca: " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind whose message, shown to the client, is
// formatted from format and args.
func Errorf(kind Kind, format string, args ...any) *Error {
	return errorf(kind, format, args...)
}

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func wrapErr(kind Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the Kind of err, or KindInternal when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

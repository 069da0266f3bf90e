package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
)

// The RFC 8555 (section 6.7) and RFC 9773 error types meshpki returns,
// without the "urn:ietf:params:acme:error:" prefix.
const (
	probAccountDoesNotExist     = "accountDoesNotExist"
	probAlreadyReplaced         = "alreadyReplaced"
	probAlreadyRevoked          = "alreadyRevoked"
	probBadCSR                  = "badCSR"
	probBadNonce                = "badNonce"
	probBadPublicKey            = "badPublicKey"
	probBadRevocationReason     = "badRevocationReason"
	probBadSignatureAlgorithm   = "badSignatureAlgorithm"
	probExternalAccountRequired = "externalAccountRequired"
	probMalformed               = "malformed"
	probOrderNotReady           = "orderNotReady"
	probRejectedIdentifier      = "rejectedIdentifier"
	probServerInternal          = "serverInternal"
	probUnauthorized            = "unauthorized"
	probUnsupportedIdentifier   = "unsupportedIdentifier"
	probConflict                = "conflict"
	probNotFound                = "malformed" // RFC 8555 has no type for a missing resource; Boulder uses malformed with 404
)

const errorNS = "urn:ietf:params:acme:error:"

// Problem is an RFC 7807 problem document with an ACME error type. It is
// also the error type of this package's handlers.
type Problem struct {
	Type        string     `json:"type"`
	Detail      string     `json:"detail,omitempty"`
	Status      int        `json:"status,omitempty"`
	Identifier  *ident     `json:"identifier,omitempty"`
	Subproblems []*Problem `json:"subproblems,omitempty"`
	// Algorithms lists the accepted JWS algorithms with
	// badSignatureAlgorithm (RFC 8555, section 6.2).
	Algorithms []string `json:"algorithms,omitempty"`

	location string // Location header, for a conflict on key change
}

func (p *Problem) Error() string { return p.Type + ": " + p.Detail }

// ShortType is the type without the ACME namespace, for metrics.
func (p *Problem) ShortType() string {
	if len(p.Type) > len(errorNS) && p.Type[:len(errorNS)] == errorNS {
		return p.Type[len(errorNS):]
	}
	return p.Type
}

// maxDetail bounds a problem's detail, whatever it quotes from the request.
const maxDetail = 1024

func problem(status int, typ, format string, args ...any) *Problem {
	detail := fmt.Sprintf(format, args...)
	if len(detail) > maxDetail {
		detail = strings.ToValidUTF8(detail[:maxDetail], "") + "…"
	}
	return &Problem{Type: errorNS + typ, Detail: detail, Status: status}
}

func malformed(format string, args ...any) *Problem {
	return problem(http.StatusBadRequest, probMalformed, format, args...)
}

func unauthorized(format string, args ...any) *Problem {
	return problem(http.StatusForbidden, probUnauthorized, format, args...)
}

func notFound(format string, args ...any) *Problem {
	return problem(http.StatusNotFound, probNotFound, format, args...)
}

func internalProblem(format string, args ...any) *Problem {
	return problem(http.StatusInternalServerError, probServerInternal, format, args...)
}

// fromCA maps an issuance error to the problem a client should see.
func fromCA(err error) *Problem {
	var ce *ca.Error
	if !errors.As(err, &ce) {
		return internalProblem("the CA failed")
	}
	msg := ce.Msg
	switch ce.Kind {
	case ca.KindBadCSR:
		return problem(http.StatusBadRequest, probBadCSR, "%s", msg)
	case ca.KindBadKey:
		return problem(http.StatusBadRequest, probBadCSR, "%s", msg)
	case ca.KindBadRequest:
		return malformed("%s", msg)
	case ca.KindForbidden:
		return problem(http.StatusForbidden, probRejectedIdentifier, "%s", msg)
	case ca.KindUnauthorized:
		return unauthorized("%s", msg)
	case ca.KindNotFound:
		return notFound("%s", msg)
	case ca.KindConflict:
		return problem(http.StatusConflict, probConflict, "%s", msg)
	case ca.KindUnavailable:
		return problem(http.StatusServiceUnavailable, probServerInternal, "%s", msg)
	}
	return internalProblem("%s", msg)
}

// asProblem turns any handler error into a problem.
func asProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return fromCA(err)
}

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	status := p.Status
	if status == 0 {
		status = http.StatusBadRequest
		p.Status = status
	}
	if p.location != "" {
		w.Header().Set("Location", p.location)
	}
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"type":"` + errorNS + probServerInternal + `","status":500}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

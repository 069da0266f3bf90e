package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// apiError is an error with its HTTP status and machine-readable code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// maxErrorMessage bounds an error message, whatever it quotes.
const maxErrorMessage = 1024

func newError(status int, code, msg string) *apiError {
	if len(msg) > maxErrorMessage {
		msg = strings.ToValidUTF8(msg[:maxErrorMessage], "") + "…"
	}
	return &apiError{status: status, code: code, msg: msg}
}

// WWWAuthenticate is the challenge every 401 response carries.
const WWWAuthenticate = `meshpki realm="meshpki", credentials="one-time-token client-certificate"`

// kindStatus maps each issuance error kind to its HTTP status and code.
// KindInternal is absent: its message stays in the log, not the response.
var kindStatus = map[ca.Kind]struct {
	status int
	code   string
}{
	ca.KindBadRequest:   {http.StatusBadRequest, "bad_request"},
	ca.KindBadCSR:       {http.StatusBadRequest, "bad_csr"},
	ca.KindBadKey:       {http.StatusBadRequest, "bad_key"},
	ca.KindUnauthorized: {http.StatusUnauthorized, "unauthorized"},
	ca.KindForbidden:    {http.StatusForbidden, "forbidden"},
	ca.KindNotFound:     {http.StatusNotFound, "not_found"},
	ca.KindConflict:     {http.StatusConflict, "conflict"},
	ca.KindUnavailable:  {http.StatusServiceUnavailable, "unavailable"},
}

// toAPIError is the one place errors become HTTP statuses.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var ce *ca.Error
	if errors.As(err, &ce) {
		if m, ok := kindStatus[ce.Kind]; ok {
			return newError(m.status, m.code, ce.Msg)
		}
	}
	return newError(http.StatusInternalServerError, "internal", "the server failed to handle the request; nothing was issued")
}

// StatusOf is the HTTP status the API answers err with, for other front
// doors (the dashboard) that show errors their own way.
func StatusOf(err error) int { return toAPIError(err).status }

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	body := wire.Error{Error: wire.ErrorDetail{Code: ae.code, Message: ae.msg}}
	if rw, ok := w.(*statusRecorder); ok {
		rw.errorCode = ae.code
	}
	if ae.status == http.StatusUnauthorized {
		// RFC 9110, section 15.5.2: a 401 carries a challenge. meshpki's
		// credentials are a one-time token in the body or a TLS client
		// certificate, neither an HTTP authentication scheme, so the
		// challenge names meshpki's own.
		w.Header().Set("WWW-Authenticate", WWWAuthenticate)
	}
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		slog.Debug("write response", "error", err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/meshpki/meshpki/internal/ca"
)

// apiError is an error with its HTTP status and machine-readable code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func newError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// toAPIError is the one place errors become HTTP statuses.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var ce *ca.Error
	if errors.As(err, &ce) {
		msg := ce.Msg
		switch ce.Kind {
		case ca.KindBadRequest:
			return newError(http.StatusBadRequest, "bad_request", msg)
		case ca.KindBadCSR:
			return newError(http.StatusBadRequest, "bad_csr", msg)
		case ca.KindBadKey:
			return newError(http.StatusBadRequest, "bad_key", msg)
		case ca.KindUnauthorized:
			return newError(http.StatusUnauthorized, "unauthorized", msg)
		case ca.KindForbidden:
			return newError(http.StatusForbidden, "forbidden", msg)
		case ca.KindNotFound:
			return newError(http.StatusNotFound, "not_found", msg)
		case ca.KindConflict:
			return newError(http.StatusConflict, "conflict", msg)
		case ca.KindUnavailable:
			return newError(http.StatusServiceUnavailable, "unavailable", msg)
		}
	}
	return newError(http.StatusInternalServerError, "internal", "the server failed to handle the request; nothing was issued")
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	var body errorBody
	body.Error.Code = ae.code
	body.Error.Message = ae.msg
	if rw, ok := w.(*statusRecorder); ok {
		rw.errorCode = ae.code
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

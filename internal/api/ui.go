package api

import (
	"context"
	"net/http"
	"time"

	"github.com/meshpki/meshpki/internal/wire"
)

// UILoginMinter mints one-time dashboard sign-ins (*web.Server).
type UILoginMinter interface {
	MintLogin(ctx context.Context, admin string) (url string, expires time.Time, err error)
}

// handleCreateUILogin answers POST /v1/ui/logins: a one-time URL that
// signs the calling admin in to the dashboard.
func (s *Server) handleCreateUILogin(w http.ResponseWriter, r *http.Request, c caller) error {
	url, expires, err := s.uiLogins.MintLogin(r.Context(), c.actor())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, wire.UILogin{URL: url, Expires: expires})
	return nil
}

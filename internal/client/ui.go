package client

import (
	"context"
	"net/http"

	"github.com/meshpki/meshpki/internal/wire"
)

// UILogin is a one-time dashboard sign-in URL.
type UILogin = wire.UILogin

// CreateUILogin mints a one-time URL that signs the calling admin in to
// the dashboard (admin).
func (c *Client) CreateUILogin(ctx context.Context) (*UILogin, error) {
	var out UILogin
	if err := c.do(ctx, http.MethodPost, "/v1/ui/logins", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

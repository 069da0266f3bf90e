package ca

import (
	"errors"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/token"
)

// TokenGrant is a minted token of either kind: a one-time token for
// /v1/sign (internal/provisioner) or a node join token. Token is a secret:
// never log it.
type TokenGrant struct {
	Token       string
	ID          string
	Provisioner string // "" for a join token
	ExpiresAt   time.Time
}

// MintError maps a token.Keyring.Mint failure: a token too large for
// Verify is the request's fault (KindBadRequest), anything else the
// server's.
func MintError(err error) error {
	var tl *token.TooLargeError
	if errors.As(err, &tl) {
		return errorf(KindBadRequest, "%s", strings.TrimPrefix(tl.Error(), "token: "))
	}
	return wrapErr(KindInternal, err, "mint token")
}

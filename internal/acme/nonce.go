package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// NonceLifetime is how long a nonce is accepted after it was issued.
const NonceLifetime = time.Hour

// nonces mints and redeems anti-replay nonces (RFC 8555, section 6.5).
//
// A nonce is 8 bytes of issue time in microseconds, 8 random bytes and a
// 16-byte HMAC-SHA-256 tag over both, base64url: any replica sharing the key
// recognises it without a lookup, so minting writes nothing. Redeeming
// records its id in the store's table of consumed one-time ids (the one
// tokens use), so a nonce is accepted once across every replica sharing the
// store. The time prefix keeps those ids arriving in order.
type nonces struct {
	key []byte
	st  store.Tokens
	now func() time.Time
}

const (
	nonceBody = 16
	nonceTag  = 16
)

func (n *nonces) mint() (string, error) {
	var b [nonceBody + nonceTag]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().UnixMicro()))
	if _, err := rand.Read(b[8:nonceBody]); err != nil {
		return "", err
	}
	copy(b[nonceBody:], n.tag(b[:nonceBody]))
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (n *nonces) tag(body []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(body)
	return m.Sum(nil)[:nonceTag]
}

// redeem accepts nonce once, or returns a badNonce problem.
func (n *nonces) redeem(ctx context.Context, nonce string) *Problem {
	bad := func(why string) *Problem {
		return problem(http.StatusBadRequest, probBadNonce, "%s; fetch a fresh nonce from newNonce and retry", why)
	}
	if nonce == "" {
		return bad("the protected header has no nonce")
	}
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceBody+nonceTag {
		return bad("the nonce was not issued by this server")
	}
	if !hmac.Equal(b[nonceBody:], n.tag(b[:nonceBody])) {
		return bad("the nonce was not issued by this server")
	}
	issued := time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8])))
	now := n.now()
	expires := issued.Add(NonceLifetime)
	if now.After(expires) {
		return bad("the nonce expired")
	}
	if issued.After(now.Add(time.Minute)) {
		return bad("the nonce is from the future")
	}
	err = n.st.ConsumeToken(ctx, "nonce-"+hex.EncodeToString(b[:nonceBody]), expires)
	switch {
	case errors.Is(err, store.ErrTokenReplayed):
		return bad("the nonce was already used")
	case err != nil:
		return problem(http.StatusServiceUnavailable, probServerInternal, "cannot record the nonce: the store failed")
	}
	return nil
}

package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewID returns a 128-bit id for a record the store indexes (a token id, a
// registration entry id): 48 bits of milliseconds since the epoch, then 80
// random bits, in hexadecimal. The time prefix makes ids arrive in roughly
// increasing order, so an index of them grows at its right edge instead of
// touching a random page per insert (and ACME lists an account's orders by
// id); the random part keeps ids unguessable.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

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

// ValidName reports whether s can name a record people type (a
// provisioner, an operator): 1 to 64 characters of a-z, 0-9 and '-'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

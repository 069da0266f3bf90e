package ca

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// randomID returns a 128-bit token id: 48 bits of milliseconds since the
// epoch, then 80 random bits. The time prefix makes ids arrive in roughly
// increasing order, so the store's index of consumed ids grows at its right
// edge instead of touching a random page per token; the random part keeps
// ids unguessable.
func randomID() (string, error) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

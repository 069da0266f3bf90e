package ca

import (
	"crypto/rand"
	"encoding/hex"
)

// randomID returns 128 random bits as hex, for token ids.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

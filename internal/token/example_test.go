package token_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/meshpki/meshpki/internal/token"
)

func ExampleKeyring() {
	// The server keeps this secret encrypted at rest (keys.FileBackend's
	// CreateSecret) and never hands it out.
	secret := make([]byte, 32)
	rand.Read(secret)
	keyring, err := token.NewKeyring(secret)
	if err != nil {
		log.Fatal(err)
	}

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	raw, err := keyring.Mint(token.Claims{
		Provisioner: "admin",
		Subject:     "web.example",
		SANs:        []string{"web.example"},
		Audience:    "https://ca.example/v1/sign",
		Purpose:     token.PurposeSign,
		IssuedAt:    now,
		NotBefore:   now,
		Expiry:      now.Add(5 * time.Minute),
	})
	if err != nil {
		log.Fatal(err)
	}

	claims, err := keyring.Verify(raw, "https://ca.example/v1/sign", token.PurposeSign, now.Add(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// The caller now records claims.ID so the token cannot be used twice.
	fmt.Println(claims.Subject, claims.SANs, len(claims.ID))

	_, err = keyring.Verify(raw, "https://ca.example/v1/sign", token.PurposeSign, now.Add(8*time.Minute))
	var tokErr *token.Error
	if errors.As(err, &tokErr) {
		fmt.Println(tokErr.Reason, "-", err)
	}
	// Output:
	// web.example [web.example] 32
	// expired - token: expired 3m0s ago
}

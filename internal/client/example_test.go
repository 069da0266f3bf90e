package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/meshpki/meshpki/internal/client"
)

// An admin creates a one-time token; the workload redeems it for a
// certificate with a CSR made from a key that never leaves it.
func Example() {
	ctx := context.Background()
	roots, err := os.ReadFile("/var/lib/meshpki/ca/root.crt")
	if err != nil {
		log.Fatal(err)
	}
	passphrase := []byte(os.Getenv("MESHPKI_PASSWORD"))
	admin, err := client.LoadCredentials("/var/lib/meshpki/secrets/admin.crt", "/var/lib/meshpki/secrets/admin.key", passphrase)
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{URL: "https://127.0.0.1:8443", RootsPEM: roots, Certificate: admin})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, client.TokenRequest{Subject: "web", SANs: []string{"web.example.internal"}})
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == "forbidden":
		log.Fatalf("policy refuses the names: %s", apiErr.Message)
	case err != nil:
		log.Fatal(err)
	}

	workload, err := client.New(client.Config{URL: "https://127.0.0.1:8443", RootsPEM: roots})
	if err != nil {
		log.Fatal(err)
	}
	csrPEM := "-----BEGIN CERTIFICATE REQUEST-----\n…" // from x509.CreateCertificateRequest
	resp, err := workload.Sign(ctx, client.SignRequest{CSR: csrPEM, Token: tok.Token})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("serial", resp.Serial, "expires", resp.NotAfter)
}

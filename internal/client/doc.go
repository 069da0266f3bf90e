// Package client is a typed Go client for the meshpki JSON API described in
// docs/API.md. It speaks HTTPS only, trusts only the root certificates it is
// given (never the system pool), and can present a TLS client certificate: an
// admin certificate for the admin endpoints, or the holder's own certificate
// for Renew and Revoke.
//
// Every method takes a context first and honours its cancellation. Errors the
// server reports are *APIError values carrying the HTTP status and the API's
// error code; a server that cannot be reached yields a *ConnectError naming
// the URL and the reason.
//
// Typical use, with an admin credential:
//
//	roots, _ := os.ReadFile("root.crt")
//	cred, err := client.LoadCredentials("admin.crt", "admin.key", passphrase)
//	if err != nil { … }
//	c, err := client.New(client.Config{URL: "https://ca.example.internal:8443", RootsPEM: roots, Certificate: cred})
//	if err != nil { … }
//	tok, err := c.CreateToken(ctx, client.TokenRequest{Subject: "web", SANs: []string{"web.example.internal"}})
//
// and, on the workload, with that token:
//
//	resp, err := c.Sign(ctx, client.SignRequest{CSR: csrPEM, Token: tok.Token})
package client

package validation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/meshpki/meshpki/internal/acme/validation"
)

func ExampleValidator_Validate() {
	const (
		token   = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
		keyAuth = token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
	)
	// The identifier's owner serves the key authorization at the challenge path.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/acme-challenge/"+token, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, keyAuth)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	v := validation.New(validation.Config{
		HTTPPort: srv.Listener.Addr().(*net.TCPAddr).Port,
		Timeout:  5 * time.Second,
	})
	id := validation.Identifier{Type: validation.IdentifierIP, Value: "127.0.0.1"}

	err := v.Validate(context.Background(), validation.ChallengeHTTP01, id, token, keyAuth)
	fmt.Println("valid:", err == nil)

	err = v.Validate(context.Background(), validation.ChallengeHTTP01, id, "unknownToken", keyAuth)
	var verr *validation.Error
	if errors.As(err, &verr) {
		fmt.Println("invalid:", verr.Type)
	}
	// Output:
	// valid: true
	// invalid: unauthorized
}

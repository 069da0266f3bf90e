package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshpki/meshpki/internal/wire"
)

// FuzzDecodeJSON feeds arbitrary bodies to the request decoder: it must never
// panic, and every failure must be a 4xx apiError.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"csr":"x","token":"y","ttl":"1h"}`))
	f.Add([]byte(`{"csr":"x","token":"y","ttl":"7x"}`))
	f.Add([]byte(`{"ttl":3600}`))
	f.Add([]byte(`{"csr":"x","unknown":1}`))
	f.Add([]byte(`{"csr":1}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"CSR":"x"}`))
	f.Add([]byte(`{"csr":"x","csr":"y"}`))
	f.Add([]byte(`{"csr":"x","token":{"a":1,"a":2}}`))
	f.Add([]byte(`{"csr":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/sign", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req wire.SignRequest
		err := decodeJSON(httptest.NewRecorder(), r, &req)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status < 400 || ae.status >= 500 || ae.code == "" || ae.msg == "" {
			t.Fatalf("decode error %#v is not a 4xx apiError", err)
		}
		if ae.status == http.StatusRequestEntityTooLarge && len(body) <= MaxBodyBytes {
			t.Fatalf("small body reported too large")
		}
	})
}

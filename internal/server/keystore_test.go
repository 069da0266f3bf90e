package server_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/servertest"
)

// Every key the server holds comes through Options.Keystore: started on a
// keystore that is not the file one, the server initialises, serves TLS
// and admin requests, and has written no key file of its own.
func TestEveryServerKeyComesFromTheKeystore(t *testing.T) {
	ks := keystest.NewMemory()
	in := servertest.Start(t, servertest.Options{Keystore: func(string, []byte) (keys.Keystore, error) { return ks, nil }})

	resp, err := in.Admin.Get(in.URL + "/v1/provisioners")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin request over the server's TLS: %s", resp.Status)
	}
	created := ks.Created()
	for _, want := range []string{"root", "token (secret)", "jwt-svid", "audit-checkpoint"} {
		if !slices.Contains(created, want) {
			t.Errorf("keystore was not asked for %q; it made %v", want, created)
		}
	}
	entries, err := os.ReadDir(filepath.Join(in.DataDir, "ca", "keys"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the server wrote %s outside its keystore", e.Name())
	}
}

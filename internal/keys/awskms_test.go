package keys_test

import (
	"context"
	"crypto"
	"errors"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
)

func kmsURI(endpoint, key string) string {
	return "awskms:///" + key + "?region=eu-west-1&endpoint=" + url.QueryEscape(endpoint)
}

// Keys generated in (local) KMS sign certificates; a fresh router finds
// them by the URI Generate returned, with the public key fetched from KMS;
// an alias names a key once; a key made outside meshpki is used as it is.
func TestAWSKMSGenerateOpenSign(t *testing.T) {
	endpoint := keystest.LocalKMS(t)
	ctx := context.Background()
	r := newRouter(t)
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.RSA2048, keys.RSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			alias := "alias/meshpki-" + string(kt)
			s, ref, err := r.CreateAt(ctx, kmsURI(endpoint, alias), kt, true)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ref, "alias/") || !strings.HasPrefix(ref, "awskms:///") || !strings.Contains(ref, "region=eu-west-1") {
				t.Errorf("the reference does not pin the key id: %s", ref)
			}
			if got, err := keys.TypeOf(s.Public()); err != nil || got != kt {
				t.Fatalf("generated %s, want %s (%v)", got, kt, err)
			}
			selfSign(t, s)
			if _, _, err := r.CreateAt(ctx, kmsURI(endpoint, alias), kt, true); !errors.Is(err, fs.ErrExist) {
				t.Errorf("generated twice under one alias: %v", err)
			}
			again := newRouter(t)
			for _, uri := range []string{ref, kmsURI(endpoint, alias)} {
				loaded, err := again.Load(ctx, uri)
				if err != nil {
					t.Fatal(err)
				}
				if !loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
					t.Fatalf("%s is another key", uri)
				}
				selfSign(t, loaded)
			}
		})
	}
	for uri, want := range map[string]string{
		kmsURI(endpoint, "alias/absent"):                         "there is no KMS key alias/absent",
		kmsURI(endpoint, "1234abcd-12ab-34cd-56ef-1234567890ab"): "there is no KMS key",
		"awskms://host/key?region=eu-west-1":                     "has no host",
		"awskms:///k?region=eu-west-1&profile=x":                 "not one meshpki knows",
		"awskms:///k?region=eu-west-1&endpoint=" + "ftp://x":     "not an http(s) URL",
	} {
		if _, err := newRouter(t).Load(ctx, uri); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want …%s…", uri, err, want)
		}
	}
	if _, err := newRouter(t).Load(ctx, kmsURI(endpoint, "alias/absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key is not fs.ErrNotExist: %v", err)
	}
	if _, _, err := r.CreateAt(ctx, kmsURI(endpoint, "some-key-id"), keys.ECP256, true); err == nil || !strings.Contains(err.Error(), "KMS chooses a new key's id") {
		t.Errorf("generate at a key id: %v", err)
	}
	if _, _, err := r.CreateAt(ctx, kmsURI(endpoint, "alias/ed"), keys.Ed25519, true); err == nil || !strings.Contains(err.Error(), "cannot be kept in AWS KMS") {
		t.Errorf("ed25519: %v", err)
	}
}

// The token MAC key in (local) KMS.
func TestAWSKMSMAC(t *testing.T) {
	endpoint := keystest.LocalKMS(t)
	testMACKey(t, kmsURI(endpoint, "alias/token"))
	if _, err := newRouter(t).CreateMACAt(context.Background(), kmsURI(endpoint, "some-id"), true); err == nil || !strings.Contains(err.Error(), "alias/NAME") {
		t.Errorf("generate at a key id: %v", err)
	}
}

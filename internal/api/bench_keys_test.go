//go:build cgo

package api_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/servertest"
)

// BenchmarkSignPathKeyBackends runs the sign path (signLoad) with the
// issuing intermediate's key in each key backend, in one run: an
// encrypted file (the default, signed in process), SoftHSM through
// PKCS#11, and local-kms through the AWS KMS API over loopback HTTP.
// SoftHSM and local-kms are software on the same 2 cores: their figures
// bound the overhead of the PKCS#11 and KMS paths from below, and say
// nothing of a real HSM's or KMS's own speed or latency.
//
//	go test -run '^$' -bench SignPathKeyBackends -benchtime 3000x ./internal/api
func BenchmarkSignPathKeyBackends(b *testing.B) {
	hsm := keystest.SoftHSM(b, "bench")
	kmsEndpoint := keystest.LocalKMS(b)
	for _, backend := range []struct{ name, uri string }{
		{"file", ""},
		{"pkcs11", hsm.URI("int-1")},
		{"awskms", "awskms:///alias/bench-int-1?region=eu-west-1&endpoint=" + url.QueryEscape(kmsEndpoint)},
	} {
		b.Run(backend.name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "data")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				b.Fatal(err)
			}
			ks := keys.OpenKeystore(dir, []byte(servertest.Password))
			_, err := ca.Init(context.Background(), dir, ca.InitOptions{Name: "Bench", TrustDomain: "bench.internal",
				Issuer: ca.KeyPlace{URI: backend.uri, Generate: backend.uri != ""}}, ks)
			ks.Close()
			if err != nil {
				b.Fatal(err)
			}
			in := servertest.Start(b, servertest.Options{DataDir: dir})
			addProvisioner(b, in, "bench", map[string]any{"allow_dns": []string{"*.bench.internal"}})
			keyring := testKeyring(b, in)
			_, csr := newCSR(b, keys.ECP256, "svc", "svc.bench.internal")
			for _, conc := range []int{1, 16} {
				b.Run(map[int]string{1: "c1", 16: "c16"}[conc], func(b *testing.B) { signLoad(b, in, keyring, csr, conc) })
			}
		})
	}
}

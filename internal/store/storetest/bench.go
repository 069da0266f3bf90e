package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// BenchInventorySize is how many certificates the inventory benchmarks
// seed: 1,000,000 unless MESHPKI_BENCH_INVENTORY says otherwise.
func BenchInventorySize() int {
	if n, err := strconv.Atoi(os.Getenv("MESHPKI_BENCH_INVENTORY")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// InventorySeeder is a store that can write scanned certificates in bulk
// (sqlstore.Store.SeedInventory).
type InventorySeeder interface {
	store.Store
	SeedInventory(ctx context.Context, at time.Time, n int, next func(i int) store.Observation) error
}

// benchSpread places certificate i's notAfter between 10 days ago and a
// year from now, in no relation to the order rows were written.
func benchSpread(now time.Time, i int) time.Time {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return now.Add(-10*24*time.Hour + time.Duration(binary.BigEndian.Uint64(h[:8])%uint64(375*24*time.Hour)))
}

// benchDER is a fake certificate: a DER SEQUENCE unique to seed.
func benchDER(seed string) []byte {
	h := sha256.Sum256([]byte(seed))
	return append([]byte{0x30, 32}, h[:]...)
}

// SeedBenchInventory fills st with n certificates in service, their
// notAfter spread from 10 days ago to a year from now: n/2 issued
// (app-I.example.test, through CommitIssuances) and n/2 scanned
// (svc-I.example.test, each at its own address, with a shared
// intermediate).
func SeedBenchInventory(tb testing.TB, st InventorySeeder, n int, now time.Time) {
	ctx := context.Background()
	start := time.Now()
	issued := n / 2
	for lo := 0; lo < issued; lo += 1000 {
		var items []store.Issuance
		for i := lo; i < min(lo+1000, issued); i++ {
			name := fmt.Sprintf("app-%d.example.test", i)
			na := benchSpread(now, i)
			items = append(items, store.Issuance{Certificate: &store.Certificate{Serial: store.Serial(fmt.Sprintf("%x", 1<<40+i)),
				Provisioner: "bench", Issuer: "default", Subject: name, Names: []string{name}, NotBefore: na.Add(-90 * 24 * time.Hour),
				NotAfter: na, DER: benchDER(name), Status: store.StatusValid, CreatedAt: now},
				Audit: []audit.Event{{Time: now, Type: audit.TypeCertificateIssued, Actor: "token:bench", Subject: fmt.Sprintf("%x", 1<<40+i),
					Outcome: "success", Detail: map[string]string{"names": name, "provisioner": "bench"}}}})
		}
		results, err := st.CommitIssuances(ctx, items)
		if err != nil || slices.ContainsFunc(results, func(e error) bool { return e != nil }) {
			tb.Fatal(err, results)
		}
	}
	// A real intermediate, which readers parse (once).
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Bench Intermediate"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	inter, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	err = st.SeedInventory(ctx, now, n-issued, func(i int) store.Observation {
		name := fmt.Sprintf("svc-%d.example.test", i)
		leaf := benchDER(name)
		sum := sha256.Sum256(leaf)
		na := benchSpread(now, issued+i)
		return store.Observation{Scope: "10.0.0.0/12:443", Location: fmt.Sprintf("10.%d.%d.%d:443", i>>16&0xff, i>>8&0xff, i&0xff),
			Chain: [][]byte{leaf, inter}, Fingerprint: hex.EncodeToString(sum[:]), Serial: store.Serial(fmt.Sprintf("%x", i+1)),
			Subject: "CN=" + name, IssuerDN: "CN=Bench Intermediate", Names: []string{name}, NotBefore: na.Add(-90 * 24 * time.Hour), NotAfter: na}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("seeded %d certificates in %s", n, time.Since(start).Round(time.Second))
}

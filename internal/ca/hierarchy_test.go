package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
	"github.com/meshpki/meshpki/internal/policy"
)

var testPassphrase = []byte("correct horse battery staple")

// Shared, read-only hierarchies and leaf keys, one per key type, so that key
// generation is paid once per test binary. Tests that change a hierarchy
// create their own with newHierarchy.
var (
	sharedMu      sync.Mutex
	sharedDirs    []string
	sharedHiers   = map[keys.KeyType]*onceValue[*Hierarchy]{}
	sharedLeafKey = map[keys.KeyType]*onceValue[crypto.Signer]{}
)

type onceValue[T any] struct {
	once  sync.Once
	value T
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range sharedDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func sharedEntry[T any](m map[keys.KeyType]*onceValue[T], kt keys.KeyType) *onceValue[T] {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	e := m[kt]
	if e == nil {
		e = &onceValue[T]{}
		m[kt] = e
	}
	return e
}

// sharedHierarchy returns a hierarchy of key type kt that tests must not
// change.
func sharedHierarchy(t testing.TB, kt keys.KeyType) *Hierarchy {
	t.Helper()
	e := sharedEntry(sharedHiers, kt)
	e.once.Do(func() {
		dir, err := os.MkdirTemp("", "meshpki-ca-test-")
		if err != nil {
			e.err = err
			return
		}
		sharedMu.Lock()
		sharedDirs = append(sharedDirs, dir)
		sharedMu.Unlock()
		e.value, e.err = initHierarchy(context.Background(), dir, InitOptions{Name: "Acme Internal", TrustDomain: "example.internal", KeyType: kt}, keystest.NewMemory())
	})
	if e.err != nil {
		t.Fatalf("init shared %s hierarchy: %v", kt, e.err)
	}
	return e.value
}

// leafKey returns a subject key of type kt, shared between tests.
func leafKey(t testing.TB, kt keys.KeyType) crypto.Signer {
	t.Helper()
	e := sharedEntry(sharedLeafKey, kt)
	e.once.Do(func() { e.value, e.err = kt.Generate() })
	if e.err != nil {
		t.Fatalf("generate %s leaf key: %v", kt, e.err)
	}
	return e.value
}

func testFileBackend(dataDir string) *keys.FileBackend {
	return keys.NewFileBackend(filepath.Join(dataDir, "ca", "keys"), testPassphrase)
}

// newHierarchy initialises a fresh CA with an in-memory key backend in a
// temporary directory.
func newHierarchy(t testing.TB, opts InitOptions) (*Hierarchy, string, *keystest.Memory) {
	t.Helper()
	dir := t.TempDir()
	if opts.TrustDomain == "" {
		opts.TrustDomain = "example.internal"
	}
	if opts.Name == "" {
		opts.Name = "Acme Internal"
	}
	kb := keystest.NewMemory()
	h, err := initHierarchy(context.Background(), dir, opts, kb)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return h, dir, kb
}

func mustIssuer(t testing.TB, h *Hierarchy, name string) *Issuer {
	t.Helper()
	iss, err := h.Issuer(name)
	if err != nil {
		t.Fatalf("Issuer(%q): %v", name, err)
	}
	return iss
}

func serverLeafRequest(pub crypto.PublicKey, now time.Time) LeafRequest {
	return LeafRequest{
		Subject: "api.example.internal",
		Names: policy.Names{
			DNS: []string{"api.example.internal", "api.prod.svc.cluster.local"},
			IPs: []net.IP{net.ParseIP("10.1.2.3").To4(), net.ParseIP("fd00::1")},
		},
		PublicKey: pub,
		NotBefore: now,
		NotAfter:  now.Add(24 * time.Hour),
	}
}

func clientLeafRequest(pub crypto.PublicKey, now time.Time) LeafRequest {
	return LeafRequest{
		Subject:   "alice",
		Names:     policy.Names{Emails: []string{"alice@example.internal"}},
		PublicKey: pub,
		NotBefore: now,
		NotAfter:  now.Add(24 * time.Hour),
	}
}

func spiffeLeafRequest(pub crypto.PublicKey, now time.Time) LeafRequest {
	return LeafRequest{
		Names:     policy.Names{URIs: []*url.URL{{Scheme: "spiffe", Host: "example.internal", Path: "/ns/app"}}},
		PublicKey: pub,
		NotBefore: now,
		NotAfter:  now.Add(time.Hour),
	}
}

func mustSign(t testing.TB, iss *Issuer, req LeafRequest) *x509.Certificate {
	t.Helper()
	cert, err := iss.SignLeaf(req)
	if err != nil {
		t.Fatalf("SignLeaf: %v", err)
	}
	return cert
}

// verifyLeaf checks leaf against the hierarchy's published roots and
// intermediates, as a relying party that fetched /roots.pem would.
func verifyLeaf(t testing.TB, h *Hierarchy, leaf *x509.Certificate, at time.Time) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(h.RootsPEM()) {
		t.Fatal("RootsPEM holds no certificate")
	}
	inters := x509.NewCertPool()
	if !inters.AppendCertsFromPEM(h.IntermediatesPEM(at)) {
		t.Fatal("IntermediatesPEM holds no certificate")
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		t.Fatalf("verify leaf %x: %v", leaf.SerialNumber, err)
	}
}

func pemCerts(t testing.TB, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("parse PEM certificate: %v", err)
		}
		certs = append(certs, cert)
	}
	return certs
}

func TestInitCreatesRootAndDefaultIssuerForEveryKeyType(t *testing.T) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048, keys.RSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			if kt == keys.RSA4096 && testing.Short() {
				t.Skip("rsa-4096 key generation is slow")
			}
			var h *Hierarchy
			if kt == keys.RSA4096 {
				h, _, _ = newHierarchy(t, InitOptions{KeyType: kt})
			} else {
				h = sharedHierarchy(t, kt)
			}
			root := h.Root()
			if got, err := keys.TypeOf(root.PublicKey); err != nil || got != kt {
				t.Errorf("root key type = %v, %v; want %s", got, err, kt)
			}
			if root.Subject.CommonName != "Acme Internal Root CA" || len(root.Subject.Organization) != 1 || root.Subject.Organization[0] != "Acme Internal" {
				t.Errorf("root subject = %q", root.Subject)
			}
			if err := root.CheckSignatureFrom(root); err != nil {
				t.Errorf("root is not self-signed: %v", err)
			}
			if !root.IsCA || !root.BasicConstraintsValid {
				t.Error("root is not a CA")
			}
			if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("root key usage = %b", root.KeyUsage)
			}
			if len(root.SubjectKeyId) == 0 {
				t.Error("root has no subject key identifier")
			}
			if d := root.NotAfter.Sub(root.NotBefore); d != DefaultRootLifetime+caBackdate {
				t.Errorf("root validity = %s, want %s", d, DefaultRootLifetime+caBackdate)
			}
			checkCriticalKeyUsage(t, root)

			iss := mustIssuer(t, h, DefaultIssuerName)
			if iss.Generation != 1 || iss.KeyType != kt || iss.Lifetime != DefaultIssuerLifetime {
				t.Errorf("issuer = %q gen %d %s %s", iss.Name, iss.Generation, iss.KeyType, iss.Lifetime)
			}
			c := iss.Cert
			if c.Subject.CommonName != "Acme Internal Intermediate CA (default, 1)" {
				t.Errorf("intermediate CN = %q", c.Subject.CommonName)
			}
			if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("intermediate basic constraints: CA=%v pathlen=%d zero=%v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature {
				t.Errorf("intermediate key usage = %b", c.KeyUsage)
			}
			checkCriticalKeyUsage(t, c)
			if !bytes.Equal(c.AuthorityKeyId, root.SubjectKeyId) || len(c.SubjectKeyId) == 0 {
				t.Error("intermediate key identifiers do not chain to the root")
			}
			if err := c.CheckSignatureFrom(root); err != nil {
				t.Errorf("intermediate not signed by root: %v", err)
			}
			if !publicKeysEqual(iss.Signer.Public(), c.PublicKey) {
				t.Error("issuer signer does not match its certificate")
			}
			for _, cert := range []*x509.Certificate{root, c} {
				if cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.Sign() <= 0 {
					t.Errorf("serial %x is not a positive 128-bit number", cert.SerialNumber)
				}
			}
			if h.TrustDomain() != "example.internal" || h.Name() != "Acme Internal" || h.TokenKeyRef() != "mem:token.secret" {
				t.Errorf("trust domain %q, name %q, token key %q", h.TrustDomain(), h.Name(), h.TokenKeyRef())
			}
			verifyLeaf(t, h, mustSign(t, iss, serverLeafRequest(leafKey(t, keys.ECP256).Public(), time.Now())), time.Now())
		})
	}
}

func checkCriticalKeyUsage(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	for _, ext := range cert.Extensions {
		if ext.Id.Equal([]int{2, 5, 29, 15}) && !ext.Critical {
			t.Errorf("%s: key usage is not critical", cert.Subject.CommonName)
		}
	}
}

// TestFileBackedHierarchy runs the CA on the real encrypted key backend: the
// layout and modes of DIR/ca, ca.json, the passphrase, a second Init, Load
// with a fresh backend, and a rotation picked up by Reload. The steps share
// one hierarchy because every key written or read costs a scrypt run.
func TestFileBackedHierarchy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	h, err := Init(ctx, dir, InitOptions{Name: "Acme Internal", TrustDomain: "example.internal"}, testFileBackend(dir))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !Initialized(dir) {
		t.Fatal("Initialized = false after Init")
	}
	checkModes(t, dir, map[string]fs.FileMode{
		"ca":                       fs.ModeDir | 0o700,
		"ca/issuers":               fs.ModeDir | 0o700,
		"ca/keys":                  fs.ModeDir | 0o700,
		"ca/ca.json":               0o600,
		"ca/keys/root.key":         0o600,
		"ca/keys/default-1.key":    0o600,
		"ca/keys/token.secret":     0o600,
		"ca/root.crt":              0o644,
		"ca/issuers/default-1.crt": 0o644,
	})

	t.Run("ca.json", func(t *testing.T) {
		data := mustRead(t, filepath.Join(caDir, "ca.json"))
		var doc struct {
			Name        string    `json:"name"`
			TrustDomain string    `json:"trust_domain"`
			KeyType     string    `json:"key_type"`
			CreatedAt   time.Time `json:"created_at"`
			Root        struct {
				Cert string `json:"cert"`
				Key  string `json:"key"`
			} `json:"root"`
			TokenKey string           `json:"token_key"`
			Issuers  []map[string]any `json:"issuers"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("ca.json: %v", err)
		}
		if doc.Name != "Acme Internal" || doc.TrustDomain != "example.internal" || doc.KeyType != "ec-p256" || doc.CreatedAt.IsZero() ||
			doc.Root.Cert != "root.crt" || doc.Root.Key != "file:root.key" || doc.TokenKey != "file:token.secret" {
			t.Errorf("ca.json = %s", data)
		}
		wantIssuer := map[string]any{"name": "default", "generation": 1.0, "cert": "issuers/default-1.crt",
			"key": "file:default-1.key", "lifetime": "8760h0m0s", "key_type": "ec-p256"}
		if len(doc.Issuers) != 1 || fmt.Sprint(doc.Issuers[0]) != fmt.Sprint(wantIssuer) {
			t.Errorf("ca.json issuers = %v, want [%v]", doc.Issuers, wantIssuer)
		}
		rootFile := mustRead(t, filepath.Join(caDir, "root.crt"))
		if certs := pemCerts(t, rootFile); len(certs) != 1 || !certs[0].Equal(h.Root()) || !bytes.Equal(h.RootsPEM(), rootFile) {
			t.Error("root.crt does not hold the root")
		}
		if h.TokenKeyRef() != "file:token.secret" {
			t.Errorf("TokenKeyRef = %q", h.TokenKeyRef())
		}
	})

	t.Run("keys are unreadable without the passphrase", func(t *testing.T) {
		keyDir := filepath.Join(caDir, "keys")
		entries, err := os.ReadDir(keyDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 3 {
			t.Errorf("key directory holds %d files, want root, default-1 and token", len(entries))
		}
		for _, e := range entries {
			block, _ := pem.Decode(mustRead(t, filepath.Join(keyDir, e.Name())))
			if block == nil {
				t.Errorf("%s is not PEM", e.Name())
				continue
			}
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				t.Errorf("%s holds a plain PKCS#8 key", e.Name())
			}
			if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
				t.Errorf("%s holds a plain EC key", e.Name())
			}
		}
		wrong := keys.NewFileBackend(keyDir, []byte("wrong passphrase"))
		if _, err := Load(ctx, dir, wrong); !errors.Is(err, keys.ErrBadPassphrase) {
			t.Errorf("Load with a wrong passphrase: err = %v, want keys.ErrBadPassphrase", err)
		}
	})

	t.Run("second Init is refused", func(t *testing.T) {
		_, err := Init(ctx, dir, InitOptions{TrustDomain: "other.internal"}, testFileBackend(dir))
		if !errors.Is(err, ErrAlreadyInitialized) {
			t.Fatalf("second Init: err = %v, want ErrAlreadyInitialized", err)
		}
		if Initialized(t.TempDir()) {
			t.Error("Initialized = true for an empty directory")
		}
	})

	// cli stands for a second process: the CLI, with its own backend.
	cli, err := Load(ctx, dir, testFileBackend(dir))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Run("Load round trip", func(t *testing.T) {
		checkSameHierarchy(t, h, cli)
	})

	t.Run("rotation by another process", func(t *testing.T) {
		gen2, err := cli.RotateIntermediate(ctx, DefaultIssuerName)
		if err != nil {
			t.Fatalf("RotateIntermediate: %v", err)
		}
		checkModes(t, dir, map[string]fs.FileMode{
			"ca/ca.json":               0o600,
			"ca/keys/default-2.key":    0o600,
			"ca/issuers/default-2.crt": 0o644,
		})
		if err := h.Reload(ctx); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got := mustIssuer(t, h, DefaultIssuerName); got.Generation != 2 || !got.Cert.Equal(gen2.Cert) || !publicKeysEqual(got.Signer.Public(), gen2.Signer.Public()) {
			t.Errorf("after Reload Issuer = generation %d", got.Generation)
		}
		now := time.Now()
		verifyLeaf(t, h, mustSign(t, mustIssuer(t, h, DefaultIssuerName), spiffeLeafRequest(leafKey(t, keys.ECP256).Public(), now)), now)
	})
}

func checkModes(t *testing.T, dir string, modes map[string]fs.FileMode) {
	t.Helper()
	for rel, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("stat %s: %v", rel, err)
			continue
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
			t.Errorf("%s mode = %v, want %v", rel, got, want)
		}
	}
}

// checkSameHierarchy compares a loaded hierarchy with the one that wrote it.
func checkSameHierarchy(t *testing.T, want, got *Hierarchy) {
	t.Helper()
	if !got.Root().Equal(want.Root()) || !bytes.Equal(got.RootsPEM(), want.RootsPEM()) {
		t.Error("loaded root differs")
	}
	if got.Name() != want.Name() || got.TrustDomain() != want.TrustDomain() || got.TokenKeyRef() != want.TokenKeyRef() {
		t.Error("loaded name, trust domain or token key differ")
	}
	now := time.Now()
	if !bytes.Equal(got.IntermediatesPEM(now), want.IntermediatesPEM(now)) {
		t.Error("loaded intermediates differ")
	}
	a, b := mustIssuer(t, want, DefaultIssuerName), mustIssuer(t, got, DefaultIssuerName)
	if !a.Cert.Equal(b.Cert) || a.Lifetime != b.Lifetime || a.KeyType != b.KeyType || a.Generation != b.Generation || !publicKeysEqual(a.Signer.Public(), b.Signer.Public()) {
		t.Error("loaded issuer differs")
	}
	verifyLeaf(t, want, mustSign(t, b, spiffeLeafRequest(leafKey(t, keys.ECP256).Public(), now)), now)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestInitRejectsBadOptions(t *testing.T) {
	long := string(bytes.Repeat([]byte("n"), 65))
	for name, opts := range map[string]InitOptions{
		"bad-trust-domain-uppercase": {TrustDomain: "Example.internal"},
		"bad-trust-domain-empty":     {TrustDomain: ""},
		"bad-trust-domain-slash":     {TrustDomain: "example.internal/x"},
		"bad-key-type":               {TrustDomain: "example.internal", KeyType: "rsa-1024"},
		"bad-name-too-long":          {TrustDomain: "example.internal", Name: long},
		"bad-name-control-character": {TrustDomain: "example.internal", Name: "Acme\nInternal"},
		"bad-negative-lifetime":      {TrustDomain: "example.internal", RootLifetime: -time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Init(context.Background(), dir, opts, testFileBackend(dir)); err == nil {
				t.Fatal("Init succeeded")
			}
			if Initialized(dir) {
				t.Error("a failed Init left ca.json behind")
			}
		})
	}
}

func TestIssuerLifetimeIsCappedAtRoot(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h, _, _ := newHierarchy(t, InitOptions{RootLifetime: 48 * time.Hour, IssuerLifetime: 100 * time.Hour, Now: func() time.Time { return now }})
	iss := mustIssuer(t, h, DefaultIssuerName)
	if !iss.Cert.NotAfter.Equal(h.Root().NotAfter) {
		t.Errorf("intermediate NotAfter = %s, root NotAfter = %s", iss.Cert.NotAfter, h.Root().NotAfter)
	}
	if want := now.Add(-time.Minute); !iss.Cert.NotBefore.Equal(want) || !h.Root().NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s / %s, want %s", iss.Cert.NotBefore, h.Root().NotBefore, want)
	}
	leaf := mustSign(t, iss, serverLeafRequest(leafKey(t, keys.ECP256).Public(), now.Add(47*time.Hour)))
	if !leaf.NotAfter.Equal(iss.Cert.NotAfter) {
		t.Errorf("leaf NotAfter = %s, want capped at %s", leaf.NotAfter, iss.Cert.NotAfter)
	}
}

func TestLoadRoundTrip(t *testing.T) {
	h, dir, kb := newHierarchy(t, InitOptions{KeyType: keys.ECP384})
	loaded, err := Load(context.Background(), dir, kb)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checkSameHierarchy(t, h, loaded)
	if _, err := Load(context.Background(), t.TempDir(), kb); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("Load of an empty directory: err = %v, want ErrNotInitialized", err)
	}
}

func TestRotationKeepsOlderLeavesVerifying(t *testing.T) {
	h, dir, kb := newHierarchy(t, InitOptions{})
	ctx := context.Background()
	gen1 := mustIssuer(t, h, DefaultIssuerName)
	now := time.Now()
	oldLeaf := mustSign(t, gen1, serverLeafRequest(leafKey(t, keys.ECP256).Public(), now))

	gen2, err := h.RotateIntermediate(ctx, DefaultIssuerName)
	if err != nil {
		t.Fatalf("RotateIntermediate: %v", err)
	}
	if gen2.Generation != 2 || gen2.Lifetime != gen1.Lifetime || gen2.KeyType != gen1.KeyType {
		t.Errorf("rotated issuer: gen %d, lifetime %s, key type %s", gen2.Generation, gen2.Lifetime, gen2.KeyType)
	}
	if gen2.Cert.Subject.CommonName != "Acme Internal Intermediate CA (default, 2)" {
		t.Errorf("rotated CN = %q", gen2.Cert.Subject.CommonName)
	}
	if publicKeysEqual(gen2.Signer.Public(), gen1.Signer.Public()) {
		t.Error("rotation reused the key")
	}
	if got := mustIssuer(t, h, DefaultIssuerName); got != gen2 {
		t.Errorf("Issuer returns generation %d, want 2", got.Generation)
	}
	inters := pemCerts(t, h.IntermediatesPEM(now))
	if len(inters) != 2 || !inters[0].Equal(gen2.Cert) || !inters[1].Equal(gen1.Cert) {
		t.Fatalf("IntermediatesPEM lists %d certificates, want generations 2 and 1 in that order", len(inters))
	}
	if all := h.Issuers(); len(all) != 2 || all[0] != gen2 || all[1].Generation != 1 {
		t.Errorf("Issuers() = %v", all)
	}
	newLeaf := mustSign(t, gen2, serverLeafRequest(leafKey(t, keys.ECP256).Public(), now))
	verifyLeaf(t, h, oldLeaf, now)
	verifyLeaf(t, h, newLeaf, now)

	// The rotation is on disk: a fresh Load sees both generations.
	loaded, err := Load(ctx, dir, kb)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustIssuer(t, loaded, DefaultIssuerName); got.Generation != 2 || !got.Cert.Equal(gen2.Cert) {
		t.Errorf("loaded Issuer generation = %d", got.Generation)
	}
	if len(loaded.Issuers()) != 2 {
		t.Errorf("loaded %d generations, want 2", len(loaded.Issuers()))
	}
	verifyLeaf(t, loaded, oldLeaf, now)
	if _, err := os.Stat(filepath.Join(dir, "ca", "issuers", "default-2.crt")); err != nil {
		t.Error(err)
	}

	if _, err := h.RotateIntermediate(ctx, "nope"); !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("rotate unknown issuer: err = %v, want ErrUnknownIssuer", err)
	}
}

func TestIssuerPicksNewestGenerationValidNow(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := t0
	h, dir, kb := newHierarchy(t, InitOptions{IssuerLifetime: 48 * time.Hour, Now: func() time.Time { return clock }})
	// The test changes the clock only while no other goroutine reads it.
	clock = t0.Add(time.Hour)
	gen2, err := h.RotateIntermediate(context.Background(), DefaultIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		at      time.Time
		wantGen int
	}{
		{"before generation 2 starts", t0.Add(30 * time.Minute), 1},
		{"once generation 2 starts", t0.Add(59 * time.Minute), 2},
		{"after generation 1 expires", t0.Add(48*time.Hour + time.Minute), 2},
		{"after every generation expires", t0.Add(50 * time.Hour), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock = tc.at
			iss, err := h.Issuer(DefaultIssuerName)
			if tc.wantGen == 0 {
				if !errors.Is(err, ErrUnknownIssuer) {
					t.Fatalf("err = %v, want ErrUnknownIssuer", err)
				}
				return
			}
			if err != nil || iss.Generation != tc.wantGen {
				t.Fatalf("Issuer = %v, %v; want generation %d", iss, err, tc.wantGen)
			}
		})
	}
	if got := pemCerts(t, h.IntermediatesPEM(t0.Add(48*time.Hour+time.Minute))); len(got) != 1 || !got[0].Equal(gen2.Cert) {
		t.Errorf("IntermediatesPEM after generation 1 expired lists %d certificates", len(got))
	}
	if _, err := h.Issuer("missing"); !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("Issuer(missing): err = %v", err)
	}

	// Load skips generations that have expired.
	loaded, err := load(context.Background(), dir, kb, func() time.Time { return t0.Add(48*time.Hour + time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	if all := loaded.Issuers(); len(all) != 1 || all[0].Generation != 2 {
		t.Errorf("Load after expiry of generation 1 loaded %d generations", len(all))
	}
}

func TestAddIssuer(t *testing.T) {
	h, dir, kb := newHierarchy(t, InitOptions{})
	ctx := context.Background()
	edge, err := h.AddIssuer(ctx, "edge", 72*time.Hour, keys.Ed25519)
	if err != nil {
		t.Fatalf("AddIssuer: %v", err)
	}
	if edge.Name != "edge" || edge.Generation != 1 || edge.KeyType != keys.Ed25519 || edge.Lifetime != 72*time.Hour {
		t.Errorf("added issuer = %q gen %d %s %s", edge.Name, edge.Generation, edge.KeyType, edge.Lifetime)
	}
	if d := edge.Cert.NotAfter.Sub(edge.Cert.NotBefore); d != 72*time.Hour+caBackdate {
		t.Errorf("validity = %s", d)
	}
	if edge.Cert.Subject.CommonName != "Acme Internal Intermediate CA (edge, 1)" {
		t.Errorf("CN = %q", edge.Cert.Subject.CommonName)
	}
	if got := mustIssuer(t, h, "edge"); got != edge {
		t.Error("Issuer(edge) does not return the added issuer")
	}
	if mustIssuer(t, h, DefaultIssuerName).Generation != 1 {
		t.Error("AddIssuer changed the default issuer")
	}
	now := time.Now()
	verifyLeaf(t, h, mustSign(t, edge, clientLeafRequest(leafKey(t, keys.ECP256).Public(), now)), now)

	if _, err := h.AddIssuer(ctx, "edge", 0, ""); !errors.Is(err, ErrIssuerExists) {
		t.Errorf("second AddIssuer: err = %v, want ErrIssuerExists", err)
	}
	if _, err := h.AddIssuer(ctx, DefaultIssuerName, 0, ""); !errors.Is(err, ErrIssuerExists) {
		t.Errorf("AddIssuer(default): err = %v, want ErrIssuerExists", err)
	}
	for _, bad := range []string{"", "Edge", "-edge", "edge_1", "edge/1", string(bytes.Repeat([]byte("e"), 33))} {
		if _, err := h.AddIssuer(ctx, bad, 0, ""); err == nil {
			t.Errorf("AddIssuer(%q) succeeded", bad)
		}
	}
	if _, err := h.AddIssuer(ctx, "weak", 0, "rsa-1024"); err == nil {
		t.Error("AddIssuer with rsa-1024 succeeded")
	}

	defaults, err := h.AddIssuer(ctx, "batch-2", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if defaults.Lifetime != DefaultIssuerLifetime || defaults.KeyType != keys.ECP256 {
		t.Errorf("defaults: lifetime %s, key type %s", defaults.Lifetime, defaults.KeyType)
	}

	loaded, err := Load(ctx, dir, kb)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Issuers()) != 3 {
		t.Errorf("loaded %d issuers, want 3", len(loaded.Issuers()))
	}
	if got := mustIssuer(t, loaded, "edge"); !got.Cert.Equal(edge.Cert) || got.Lifetime != 72*time.Hour || got.KeyType != keys.Ed25519 {
		t.Error("loaded edge issuer differs")
	}
}

func TestReloadPicksUpRotationByAnotherInstance(t *testing.T) {
	server, dir, kb := newHierarchy(t, InitOptions{})
	ctx := context.Background()
	cli, err := Load(ctx, dir, kb)
	if err != nil {
		t.Fatal(err)
	}
	gen2, err := cli.RotateIntermediate(ctx, DefaultIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AddIssuer(ctx, "edge", 0, ""); err != nil {
		t.Fatal(err)
	}
	before := mustIssuer(t, server, DefaultIssuerName)
	if before.Generation != 1 {
		t.Fatalf("server sees generation %d before Reload", before.Generation)
	}
	if err := server.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := mustIssuer(t, server, DefaultIssuerName)
	if after.Generation != 2 || !after.Cert.Equal(gen2.Cert) {
		t.Errorf("server sees generation %d after Reload", after.Generation)
	}
	if mustIssuer(t, server, DefaultIssuerName) != after {
		t.Error("Issuer returns different instances for one generation")
	}
	// Generation 1 keeps its loaded signer.
	for _, iss := range server.Issuers() {
		if iss.Name == DefaultIssuerName && iss.Generation == 1 && iss != before {
			t.Error("Reload replaced the already loaded generation 1")
		}
	}
	mustIssuer(t, server, "edge")

	// A rotation made by the server itself after the CLI's keeps both.
	gen3, err := server.RotateIntermediate(ctx, DefaultIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	if gen3.Generation != 3 || len(server.Issuers()) != 4 {
		t.Errorf("generation %d, %d issuers; want 3 and 4", gen3.Generation, len(server.Issuers()))
	}
}

func TestReloadFailureKeepsState(t *testing.T) {
	h, dir, _ := newHierarchy(t, InitOptions{})
	if err := os.WriteFile(filepath.Join(dir, "ca", "ca.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(context.Background()); err == nil {
		t.Fatal("Reload of a broken ca.json succeeded")
	}
	mustIssuer(t, h, DefaultIssuerName)
}

func TestIssuerLookupIsSafeDuringReloadAndRotation(t *testing.T) {
	h, _, _ := newHierarchy(t, InitOptions{})
	ctx := context.Background()
	pub := leafKey(t, keys.ECP256).Public()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				iss, err := h.Issuer(DefaultIssuerName)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := iss.SignLeaf(spiffeLeafRequest(pub, time.Now())); err != nil {
					t.Error(err)
					return
				}
				_ = h.IntermediatesPEM(time.Now())
			}
		})
	}
	for range 2 {
		if _, err := h.RotateIntermediate(ctx, DefaultIssuerName); err != nil {
			t.Error(err)
		}
		if err := h.Reload(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if got := mustIssuer(t, h, DefaultIssuerName).Generation; got != 3 {
		t.Errorf("generation = %d, want 3", got)
	}
}

func TestValidateTrustDomain(t *testing.T) {
	for _, good := range []string{"example.internal", "prod_1.example-corp.org", "td"} {
		if err := ValidateTrustDomain(good); err != nil {
			t.Errorf("ValidateTrustDomain(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", "Example.org", "example.org:8080", "spiffe://example.org", "ex ample", "ümlaut.org"} {
		if err := ValidateTrustDomain(bad); err == nil {
			t.Errorf("ValidateTrustDomain(%q) = nil", bad)
		}
	}
}

func ExampleInit() {
	dir, err := os.MkdirTemp("", "meshpki-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	kb := keys.NewFileBackend(filepath.Join(dir, "ca", "keys"), []byte("passphrase"))
	h, err := Init(context.Background(), dir, InitOptions{Name: "Acme Internal", TrustDomain: "example.internal"}, kb)
	if err != nil {
		fmt.Println(err)
		return
	}
	iss, err := h.Issuer("default")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(h.Root().Subject.CommonName)
	fmt.Println(iss.Cert.Subject.CommonName)
	// Output:
	// Acme Internal Root CA
	// Acme Internal Intermediate CA (default, 1)
}

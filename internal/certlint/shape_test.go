package certlint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
)

// testCA is an issuer for shape tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Shape Test CA", Organization: []string{"meshpki"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert, key}
}

// profile is what varies between certificates of one shape test.
type profile struct {
	cn     string
	dns    []string
	ips    []net.IP
	uris   []string
	emails []string
	life   time.Duration
}

// sign issues a leaf in the form ca.SignLeaf makes (SKI from the key,
// critical SANs without a subject), with a fresh serial.
func (c testCA) sign(t testing.TB, p profile, pub crypto.PublicKey, notBefore time.Time) []byte {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	serial.Add(serial, big.NewInt(1))
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ski := sha256.Sum256(spki)
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: notBefore, NotAfter: notBefore.Add(p.life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, SubjectKeyId: ski[:20],
		Subject: pkix.Name{CommonName: p.cn}, DNSNames: p.dns, IPAddresses: p.ips, EmailAddresses: p.emails,
	}
	for _, u := range p.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func tbs(t testing.TB, der []byte) []byte {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c.RawTBSCertificate
}

func waitForSmallKeyTable(t testing.TB) {
	t.Helper()
	Warm()
	deadline := time.Now().Add(time.Minute)
	for p256SmallKeys.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the small-key table was not built within a minute")
		}
		time.Sleep(10 * time.Millisecond) // waits for the background build, not for time to pass
	}
}

func edKey(t testing.TB) crypto.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func ecKey(t testing.TB, curve elliptic.Curve) crypto.PublicKey {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// smallP256Key returns the public key of the private scalar d.
func smallP256Key(t testing.TB, d int64) crypto.PublicKey {
	var b [32]byte
	big.NewInt(d).FillBytes(b[:])
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b[:])
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

var shapeProfiles = map[string]profile{
	"server": {cn: "api.example.internal", dns: []string{"api.example.internal", "api.svc.cluster.local"}, ips: []net.IP{net.ParseIP("10.1.2.3").To4(), net.ParseIP("fd00::1")}, life: 24 * time.Hour},
	"client": {cn: "alice", emails: []string{"alice@example.internal"}, life: 24 * time.Hour},
	"spiffe": {uris: []string{"spiffe://example.internal/ns/prod/sa/web"}, life: time.Hour},
	"bad":    {cn: "x", dns: []string{"under_score.example.internal", "x.-bad.internal"}, life: time.Hour},
}

func TestLeafShape(t *testing.T) {
	waitForSmallKeyTable(t)
	ca := newTestCA(t)
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Hour)
	server := shapeProfiles["server"]
	shapeOf := func(der []byte) ([32]byte, bool) { return leafShape(tbs(t, der)) }

	base, ok := shapeOf(ca.sign(t, server, edKey(t), day))
	if !ok {
		t.Fatal("an Ed25519 leaf has no shape")
	}
	same := map[string][]byte{
		"another key, serial and time of day": ca.sign(t, server, edKey(t), day.Add(3*time.Hour+17*time.Second)),
	}
	for name, der := range same {
		if s, ok := shapeOf(der); !ok || s != base {
			t.Errorf("%s: shape differs (ok=%t)", name, ok)
		}
	}
	longer := server
	longer.life += time.Second
	otherNames := server
	otherNames.dns = []string{"api.example.internal", "api2.svc.cluster.local"}
	otherCN := server
	otherCN.cn = "api2.example.internal"
	differ := map[string][]byte{
		"a second longer":   ca.sign(t, longer, edKey(t), day),
		"next day":          ca.sign(t, server, edKey(t), day.Add(24*time.Hour)),
		"other DNS name":    ca.sign(t, otherNames, edKey(t), day),
		"other common name": ca.sign(t, otherCN, edKey(t), day),
		"P-256 key":         ca.sign(t, server, ecKey(t, elliptic.P256()), day),
		"other issuer":      newTestCA(t).sign(t, server, edKey(t), day),
	}
	for name, der := range differ {
		if s, ok := shapeOf(der); ok && s == base {
			t.Errorf("%s: same shape as the base leaf", name)
		}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none := map[string][]byte{
		"RSA key":         ca.sign(t, server, rsaKey.Public(), day),
		"P-384 key":       ca.sign(t, server, ecKey(t, elliptic.P384()), day),
		"small P-256 key": ca.sign(t, server, smallP256Key(t, 5), day),
		"negated small":   ca.sign(t, server, smallP256Key(t, -1), day),
	}
	for name, der := range none {
		if _, ok := shapeOf(der); ok {
			t.Errorf("%s: has a shape, want none (lint in full)", name)
		}
	}
	if _, ok := leafShape([]byte{0x30, 0x00}); ok {
		t.Error("junk has a shape")
	}
}

// TestShapeCoversLintInputs is the evidence for reusing a verdict by shape:
// for pairs of leaves of one shape — each profile, each shaped key type,
// good names and bad — every lint the Linter runs gives the same status to
// both. A zlint upgrade that adds a lint reading the serial, the exact
// time or the key bits of such keys fails here.
func TestShapeCoversLintInputs(t *testing.T) {
	waitForSmallKeyTable(t)
	l := Default()
	ca := newTestCA(t)
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Minute)
	keyGens := map[string]func() crypto.PublicKey{
		"ed25519": func() crypto.PublicKey { return edKey(t) },
		"p256":    func() crypto.PublicKey { return ecKey(t, elliptic.P256()) },
	}
	for pname, p := range shapeProfiles {
		for kname, gen := range keyGens {
			for i := range 5 {
				a := ca.sign(t, p, gen(), day.Add(time.Duration(i)*time.Hour))
				b := ca.sign(t, p, gen(), day.Add(time.Duration(i)*time.Hour+37*time.Minute+11*time.Second))
				sa, oka := leafShape(tbs(t, a))
				sb, okb := leafShape(tbs(t, b))
				if !oka || !okb || sa != sb {
					t.Fatalf("%s/%s: the pair does not share a shape", pname, kname)
				}
				za, err := zx509.ParseCertificate(a)
				if err != nil {
					t.Fatal(err)
				}
				zb, err := zx509.ParseCertificate(b)
				if err != nil {
					t.Fatal(err)
				}
				for _, lt := range l.lints {
					ra, rb := lt.Execute(za, l.cfg), lt.Execute(zb, l.cfg)
					if ra.Status != rb.Status {
						t.Errorf("%s/%s: lint %s gives %s and %s to two leaves of one shape", pname, kname, lt.Name, ra.Status, rb.Status)
					}
				}
			}
		}
	}
}

func TestCheckLeafReusesVerdictByShape(t *testing.T) {
	waitForSmallKeyTable(t)
	l, err := New(Sources)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Minute)
	copies := 0
	check := func(der []byte) error {
		return l.CheckLeaf(tbs(t, der), func() ([]byte, error) { copies++; return der, nil })
	}
	for i := range 3 {
		if err := check(ca.sign(t, shapeProfiles["server"], edKey(t), day.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if copies != 1 {
		t.Errorf("three leaves of one shape were linted %d times, want 1", copies)
	}
	for range 2 {
		if err := check(ca.sign(t, shapeProfiles["bad"], edKey(t), day)); err == nil {
			t.Fatal("a leaf with an underscore passed")
		}
	}
	if copies != 3 {
		t.Errorf("a failing shape was linted %d times in two tries, want 2 (failures are not remembered)", copies-1)
	}
	if err := check(ca.sign(t, shapeProfiles["server"], smallP256Key(t, 7), day)); err == nil {
		t.Fatal("a small P-256 key passed")
	}
}

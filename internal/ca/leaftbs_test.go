package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
)

// testIssuer is an issuer whose certificate is valid from 1900 to 9999, so
// that leaf validities are never capped, signed by a key of the given type.
type testIssuer struct {
	name string
	iss  *Issuer
}

// longLivedIssuer self-signs a CA certificate for key with the given
// subject. Without skid the certificate has no subject key identifier, so
// leaves get no AKI.
func longLivedIssuer(t testing.TB, name string, key crypto.Signer, subject pkix.Name, skid bool) testIssuer {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               subject,
		NotBefore:             time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: skid, // crypto/x509 adds a SKI to CA certificates only
		IsCA:                  skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("issuer %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if skid != (len(cert.SubjectKeyId) > 0) {
		t.Fatalf("issuer %s: SKI %x", name, cert.SubjectKeyId)
	}
	return testIssuer{name, &Issuer{Name: name, Generation: 1, Cert: cert, Signer: key}}
}

// testIssuers returns long-lived issuers for every fast-path key type, one
// without a SKI, and one whose subject is CN=self.example (a leaf with that
// CN is self-issued and gets no AKI).
func testIssuers(t testing.TB) []testIssuer {
	t.Helper()
	gen := func(curve elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subject := caSubject("Acme Internal", "Intermediate CA (diff, 1)")
	return []testIssuer{
		longLivedIssuer(t, "ec-p256", gen(elliptic.P256()), subject, true),
		longLivedIssuer(t, "ec-p384", gen(elliptic.P384()), subject, true),
		longLivedIssuer(t, "ec-p521", gen(elliptic.P521()), subject, true),
		longLivedIssuer(t, "ed25519", edKey, subject, true),
		longLivedIssuer(t, "ec-p256-no-ski", gen(elliptic.P256()), subject, false),
		longLivedIssuer(t, "ec-p256-cn-only", gen(elliptic.P256()), pkix.Name{CommonName: "self.example"}, true),
	}
}

// signLeafFast is the fast path without the lint step: the encoding that
// the tests here compare with x509.CreateCertificate's.
func signLeafFast(fs fastSigner, tmpl, issuer *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	tbs, err := leafTBSFast(fs, tmpl, issuer, pub)
	if err != nil {
		return nil, err
	}
	return assembleCert(fs.key, fs, tbs)
}

// signBothPaths signs tmpl for pub with the fast path and with
// x509.CreateCertificate.
func signBothPaths(t testing.TB, iss *Issuer, tmpl *x509.Certificate, pub crypto.PublicKey) (fast, slow []byte, fastErr, slowErr error) {
	t.Helper()
	fs, ok := fastSignerFor(iss.Signer)
	if !ok {
		t.Fatalf("signer %T is not on the fast path", iss.Signer)
	}
	if !fastPathTemplate(tmpl) {
		t.Fatal("template is not on the fast path")
	}
	fast, fastErr = signLeafFast(fs, tmpl, iss.Cert, pub)
	slow, slowErr = x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Signer)
	return fast, slow, fastErr, slowErr
}

// requireSameLeaf fails unless both paths failed, or both succeeded with
// the same TBSCertificate — and, for an Ed25519 issuer, whose signatures are
// deterministic, the same certificate.
func requireSameLeaf(t testing.TB, iss *Issuer, fast, slow []byte, fastErr, slowErr error) {
	t.Helper()
	if fastErr != nil || slowErr != nil {
		if fastErr == nil || slowErr == nil {
			t.Fatalf("fast path error %v, CreateCertificate error %v", fastErr, slowErr)
		}
		return
	}
	fastTBS, slowTBS := rawTBS(t, fast), rawTBS(t, slow)
	if !bytes.Equal(fastTBS, slowTBS) {
		i := 0
		for i < len(fastTBS) && i < len(slowTBS) && fastTBS[i] == slowTBS[i] {
			i++
		}
		t.Fatalf("TBSCertificates differ at byte %d\nfast: %x\nx509: %x", i, fastTBS, slowTBS)
	}
	if _, ok := iss.Signer.(ed25519.PrivateKey); ok && !bytes.Equal(fast, slow) {
		t.Fatalf("Ed25519 certificates differ\nfast: %x\nx509: %x", fast, slow)
	}
}

// rawTBS returns the TBSCertificate of a DER certificate without parsing
// the rest.
func rawTBS(t testing.TB, der []byte) []byte {
	t.Helper()
	input := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !input.ReadASN1(&cert, cbasn1.SEQUENCE) || !input.Empty() || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		t.Fatalf("not a certificate: %x", der)
	}
	return tbs
}

// diffRequests are the requests of the differential test: every SAN type,
// every string type of the CN, the CN length bound, and both time types.
func diffRequests(t testing.TB) map[string]LeafRequest {
	t.Helper()
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	now := time.Now()
	date := func(year int, month time.Month, day, hour, min, sec int) time.Time {
		return time.Date(year, month, day, hour, min, sec, 0, time.UTC)
	}
	var manyDNS []string
	for i := range 300 {
		manyDNS = append(manyDNS, fmt.Sprintf("host-%03d.svc.example.internal", i))
	}
	reqs := map[string]LeafRequest{
		"server":               {Subject: "api.example.internal", Names: policy.Names{DNS: []string{"api.example.internal", "api.prod.svc.cluster.local"}, IPs: []net.IP{net.ParseIP("10.1.2.3").To4(), net.ParseIP("fd00::1")}}},
		"client-email":         {Subject: "alice", Names: policy.Names{Emails: []string{"alice@example.internal"}}},
		"spiffe-empty-subject": {Names: policy.Names{URIs: []*url.URL{mustURL("spiffe://example.internal/ns/app/sa/web")}}},
		"cn-only":              {Subject: "just-a-cn"},
		"cn-asterisk":          {Subject: "*.example.internal", Names: policy.Names{DNS: []string{"*.example.internal"}}},
		"cn-ampersand":         {Subject: "R&D team", Names: policy.Names{DNS: []string{"rnd.example.internal"}}},
		"cn-utf8":              {Subject: "café.example", Names: policy.Names{DNS: []string{"xn--caf-dma.example"}}},
		"cn-cjk":               {Subject: "日本語のサービス"},
		"cn-underscore-at":     {Subject: "svc_account@realm", Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-printable-punct":   {Subject: "A-z 0'9()+,./:=?", Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-control-char":      {Subject: "tab\there", Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-64-ascii":          {Subject: strings.Repeat("a", 64), Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-65-ascii-dropped":  {Subject: strings.Repeat("a", 65), Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-64-runes-utf8":     {Subject: strings.Repeat("é", 64), Names: policy.Names{DNS: []string{"svc.example"}}},
		"cn-65-runes-dropped":  {Subject: strings.Repeat("é", 65), Names: policy.Names{URIs: []*url.URL{mustURL("spiffe://td/x")}}},
		"self-issued-cn":       {Subject: "self.example", Names: policy.Names{DNS: []string{"self.example"}}},
		"all-san-types": {Subject: "all", Names: policy.Names{
			DNS:    []string{"a.example", "b.example"},
			Emails: []string{"a@example", "b@example"},
			IPs:    []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("::1"), net.ParseIP("2001:db8::ff"), net.IPv4(198, 51, 100, 7).To4()},
			URIs:   []*url.URL{mustURL("spiffe://example.internal/a"), mustURL("https://user@example.com:8443/p/a%20th?q=1&r=2#frag"), mustURL("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")},
		}},
		"uri-escaped-utf8":  {Names: policy.Names{URIs: []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/ü"}}}},
		"ipv4-in-16-bytes":  {Names: policy.Names{IPs: []net.IP{net.ParseIP("10.0.0.1")}}},
		"ipv4-mapped-ipv6":  {Names: policy.Names{IPs: []net.IP{net.ParseIP("::ffff:10.0.0.2")}}},
		"300-dns-names":     {Subject: "many", Names: policy.Names{DNS: manyDNS}},
		"ends-2049-last-s":  {Subject: "t", NotBefore: date(2049, 12, 31, 0, 0, 0), NotAfter: date(2049, 12, 31, 23, 59, 59)},
		"ends-2050-first-s": {Subject: "t", NotBefore: date(2049, 12, 31, 23, 59, 59), NotAfter: date(2050, 1, 1, 0, 0, 0)},
		"starts-1949":       {Subject: "t", NotBefore: date(1949, 12, 31, 23, 59, 59), NotAfter: date(1950, 1, 1, 0, 0, 0)},
		"year-2100":         {Subject: "t", NotBefore: date(2099, 6, 1, 12, 0, 0), NotAfter: date(2100, 6, 1, 12, 0, 0)},
		"year-9999":         {Subject: "t", NotBefore: date(9999, 1, 1, 0, 0, 0), NotAfter: date(9999, 12, 31, 23, 59, 59)},
		"subsecond-nonutc": {Subject: "t", NotBefore: time.Date(2030, 3, 4, 5, 6, 7, 999999999, time.FixedZone("IST", 5*3600+1800)),
			NotAfter: time.Date(2049, 12, 31, 23, 30, 0, 1, time.FixedZone("EST", -5*3600))},
		"capped-at-issuer": {Subject: "t", NotBefore: date(9999, 12, 1, 0, 0, 0), NotAfter: date(9999, 12, 31, 23, 59, 59).Add(time.Hour)},
	}
	for name, req := range reqs {
		if req.NotBefore.IsZero() {
			req.NotBefore, req.NotAfter = now, now.Add(24*time.Hour)
			reqs[name] = req
		}
	}
	return reqs
}

// diffSerials cover one-byte serials, a leading 0x80 byte that needs a zero
// pad, the 128-bit serials SignLeaf makes and a 20-byte serial.
func diffSerials(t testing.TB) []*big.Int {
	t.Helper()
	random, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	big2 := func(exp uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), exp) }
	return []*big.Int{
		big.NewInt(0), big.NewInt(1), big.NewInt(0x80), big2(127), new(big.Int).Sub(big2(128), big.NewInt(1)), big2(159), random,
	}
}

// slowCurveRequests are the diffRequests run with P-384 and P-521 issuers.
var slowCurveRequests = []string{"server", "client-email", "spiffe-empty-subject", "cn-utf8", "all-san-types", "ends-2050-first-s"}

// TestLeafTBSMatchesCreateCertificate is the differential test of the fast
// path: for every fast-path issuer key type, subject key type and request
// (on P-384 and P-521, slowCurveRequests with one subject key type each),
// the TBSCertificate equals x509.CreateCertificate's with the same serial
// and times, and the certificate verifies under the issuer.
func TestLeafTBSMatchesCreateCertificate(t *testing.T) {
	issuers := testIssuers(t)
	reqs := diffRequests(t)
	serials := diffSerials(t)
	subjectTypes := []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048}
	for _, ti := range issuers {
		t.Run(ti.name, func(t *testing.T) {
			t.Parallel()
			// P-384 and P-521 are slow, and only the signature algorithm
			// depends on the issuer key: a few requests, with the subject
			// key types in turn.
			slow := ti.name == "ec-p384" || ti.name == "ec-p521"
			i := 0
			for _, name := range slices.Sorted(maps.Keys(reqs)) {
				if slow && !slices.Contains(slowCurveRequests, name) {
					continue
				}
				req := reqs[name]
				for j, kt := range subjectTypes {
					if slow && j != i%len(subjectTypes) {
						continue
					}
					i++
					req.PublicKey = leafKey(t, kt).Public()
					tmpl, err := ti.iss.leafTemplate(req, serials[i%len(serials)])
					if err != nil {
						t.Fatalf("%s, %s subject: %v", name, kt, err)
					}
					fast, slow, fastErr, slowErr := signBothPaths(t, ti.iss, tmpl, req.PublicKey)
					if fastErr != nil || slowErr != nil {
						t.Fatalf("%s, %s subject: fast path error %v, CreateCertificate error %v", name, kt, fastErr, slowErr)
					}
					requireSameLeaf(t, ti.iss, fast, slow, fastErr, slowErr)
					cert, err := x509.ParseCertificate(fast)
					if err != nil {
						t.Fatalf("%s, %s subject: parse: %v", name, kt, err)
					}
					// CheckSignature, not CheckSignatureFrom: the issuer
					// without a SKI is not a CA certificate.
					if err := ti.iss.Cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
						t.Fatalf("%s, %s subject: signature: %v", name, kt, err)
					}
				}
			}
		})
	}
}

// TestLeafTBSMatchesCreateCertificateForOtherTemplates covers the parts of
// marshalLeafTBS that SignLeaf's templates leave constant: every key usage
// bit, absent extensions, one extended key usage.
func TestLeafTBSMatchesCreateCertificateForOtherTemplates(t *testing.T) {
	iss := testIssuers(t)[0].iss
	pub := leafKey(t, keys.ECP256).Public()
	now := time.Now()
	base := func() *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: now, NotAfter: now.Add(time.Hour), DNSNames: []string{"a.example"}}
	}
	variants := map[string]func(*x509.Certificate){
		"no-extensions-but-san":   func(*x509.Certificate) {},
		"no-extensions-at-all":    func(c *x509.Certificate) { c.DNSNames = nil; c.Subject.CommonName = "x" },
		"empty-subject-no-names":  func(c *x509.Certificate) { c.DNSNames = nil },
		"basic-constraints-only":  func(c *x509.Certificate) { c.BasicConstraintsValid = true },
		"client-auth-only":        func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} },
		"eku-reversed-duplicated": func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{2, 1, 1} },
		"ski-only":                func(c *x509.Certificate) { c.SubjectKeyId = []byte{1, 2, 3} },
		"ocsp-only":               func(c *x509.Certificate) { c.OCSPServer = []string{"http://ca.example/ocsp"} },
		"ca-issuers-only":         func(c *x509.Certificate) { c.IssuingCertificateURL = []string{"http://ca.example/i.pem"} },
		"crl-only-no-names": func(c *x509.Certificate) {
			c.DNSNames, c.Subject.CommonName = nil, "x"
			c.CRLDistributionPoints = []string{"http://ca.example/crl/default/1/0"}
		},
		"every-pointer-twice": func(c *x509.Certificate) {
			c.OCSPServer = []string{"http://a.example/ocsp", "http://b.example/ocsp"}
			c.IssuingCertificateURL = []string{"http://a.example/i", "http://b.example/i"}
			c.CRLDistributionPoints = []string{"http://a.example/crl", "http://b.example/crl"}
		},
	}
	for ku := x509.KeyUsage(1); ku < 1<<10; ku += 7 {
		variants[fmt.Sprintf("key-usage-%b", ku)] = func(c *x509.Certificate) { c.KeyUsage = ku }
	}
	for _, ku := range []x509.KeyUsage{x509.KeyUsageDecipherOnly, x509.KeyUsageEncipherOnly, x509.KeyUsageDigitalSignature | x509.KeyUsageDecipherOnly, 1 << 16} {
		variants[fmt.Sprintf("key-usage-%b", ku)] = func(c *x509.Certificate) { c.KeyUsage = ku }
	}
	for name, mutate := range variants {
		tmpl := base()
		mutate(tmpl)
		fast, slow, fastErr, slowErr := signBothPaths(t, iss, tmpl, pub)
		if fastErr != nil || slowErr != nil {
			t.Fatalf("%s: fast path error %v, CreateCertificate error %v", name, fastErr, slowErr)
		}
		requireSameLeaf(t, iss, fast, slow, fastErr, slowErr)
	}
}

// TestLeafTBSFailsWhereCreateCertificateFails checks that names and times
// crypto/x509 cannot encode fail on the fast path too, and that SignLeaf
// reports them with its usual prefix.
func TestLeafTBSFailsWhereCreateCertificateFails(t *testing.T) {
	iss := testIssuers(t)[0].iss
	pub := leafKey(t, keys.ECP256).Public()
	now := time.Now()
	for name, req := range map[string]LeafRequest{
		"bad-dns-not-ascii":    {Names: policy.Names{DNS: []string{"bücher.example"}}},
		"bad-email-not-ascii":  {Names: policy.Names{Emails: []string{"jörg@example"}}},
		"bad-uri-not-ascii":    {Names: policy.Names{URIs: []*url.URL{{Scheme: "urn", Opaque: "ü"}}}},
		"bad-dns-invalid-utf8": {Names: policy.Names{DNS: []string{"a\xffb.example"}}},
		"bad-cn-invalid-utf8":  {Subject: "a\xffb", Names: policy.Names{DNS: []string{"a.example"}}},
		"bad-year-before-0":    {Subject: "t", NotBefore: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: now},
	} {
		t.Run(name, func(t *testing.T) {
			req.PublicKey = pub
			if req.NotBefore.IsZero() {
				req.NotBefore, req.NotAfter = now, now.Add(time.Hour)
			}
			tmpl, err := iss.leafTemplate(req, big.NewInt(7))
			if err != nil {
				t.Fatal(err)
			}
			fast, slow, fastErr, slowErr := signBothPaths(t, iss, tmpl, pub)
			if fastErr == nil || slowErr == nil {
				t.Fatalf("fast path error %v, CreateCertificate error %v", fastErr, slowErr)
			}
			requireSameLeaf(t, iss, fast, slow, fastErr, slowErr)
			if _, err := iss.SignLeaf(req); err == nil || !strings.HasPrefix(err.Error(), "ca: sign leaf with issuer ") {
				t.Errorf("SignLeaf error = %v", err)
			}
		})
	}
}

// TestSignLeafFastPathVerifies signs through SignLeaf with the hierarchy's
// issuers of every fast-path key type and checks the signature and the
// chain up to the root.
func TestSignLeafFastPathVerifies(t *testing.T) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			h := sharedHierarchy(t, kt)
			iss := mustIssuer(t, h, DefaultIssuerName)
			if _, ok := fastSignerFor(iss.Signer); !ok {
				t.Fatalf("issuer signer %T is not on the fast path", iss.Signer)
			}
			now := time.Now()
			for _, subject := range []keys.KeyType{keys.ECP256, keys.Ed25519, keys.RSA2048} {
				pub := leafKey(t, subject).Public()
				for _, req := range []LeafRequest{serverLeafRequest(pub, now), clientLeafRequest(pub, now), spiffeLeafRequest(pub, now)} {
					tmpl, err := iss.leafTemplate(req, big.NewInt(1))
					if err != nil {
						t.Fatal(err)
					}
					if !fastPathTemplate(tmpl) {
						t.Fatal("SignLeaf's template is not on the fast path")
					}
					leaf := mustSign(t, iss, req)
					if err := leaf.CheckSignatureFrom(iss.Cert); err != nil {
						t.Fatalf("signature: %v", err)
					}
					verifyLeaf(t, h, leaf, now)
				}
			}
		})
	}
}

// faultySigner hides a key behind a wrapper and, when broken, returns a
// signature of the wrong message, as a faulty HSM might.
type faultySigner struct {
	crypto.Signer
	broken bool
}

func (s faultySigner) Sign(rnd io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.broken {
		digest = bytes.Repeat([]byte{0x5a}, len(digest))
	}
	return s.Signer.Sign(rnd, digest, opts)
}

// TestOtherSignersKeepCreateCertificate checks that RSA and wrapped signers
// take x509.CreateCertificate, whose check after signing catches a signer
// that returns a bad signature.
func TestOtherSignersKeepCreateCertificate(t *testing.T) {
	rsaIss := mustIssuer(t, sharedHierarchy(t, keys.RSA2048), DefaultIssuerName)
	if _, ok := fastSignerFor(rsaIss.Signer); ok {
		t.Error("an RSA signer is on the fast path")
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fastSignerFor(p224); ok {
		t.Error("a P-224 signer is on the fast path")
	}
	if _, ok := fastSignerFor((*ecdsa.PrivateKey)(nil)); ok {
		t.Error("a nil signer is on the fast path")
	}
	now := time.Now()
	pub := leafKey(t, keys.ECP256).Public()
	leaf := mustSign(t, rsaIss, serverLeafRequest(pub, now))
	if err := leaf.CheckSignatureFrom(rsaIss.Cert); err != nil {
		t.Fatal(err)
	}

	base := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	wrapped := *base
	wrapped.Signer = faultySigner{Signer: base.Signer}
	if _, ok := fastSignerFor(wrapped.Signer); ok {
		t.Fatal("a wrapped signer is on the fast path")
	}
	if _, err := wrapped.SignLeaf(serverLeafRequest(pub, now)); err != nil {
		t.Fatalf("wrapped signer: %v", err)
	}
	wrapped.Signer = faultySigner{Signer: base.Signer, broken: true}
	if _, err := wrapped.SignLeaf(serverLeafRequest(pub, now)); err == nil || !strings.Contains(err.Error(), "signature returned by signer is invalid") {
		t.Fatalf("broken wrapped signer: error %v, want CreateCertificate's signature check", err)
	}
}

// TestSignLeafFastRefusesMismatchedKey checks that the fast path, which does
// not verify its signature, refuses a key that is not the issuer
// certificate's, as CreateCertificate does.
func TestSignLeafFastRefusesMismatchedKey(t *testing.T) {
	iss := *mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	other, err := keys.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	iss.Signer = other
	if _, err := iss.SignLeaf(serverLeafRequest(leafKey(t, keys.ECP256).Public(), time.Now())); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("error = %v, want a key mismatch", err)
	}
}

// TestFastPathTemplateRefusesOtherFields checks that a template with a field
// the fast path does not encode falls back to CreateCertificate.
func TestFastPathTemplateRefusesOtherFields(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	req := serverLeafRequest(leafKey(t, keys.ECP256).Public(), time.Now())
	for name, mutate := range map[string]func(*x509.Certificate){
		"bad-organization": func(c *x509.Certificate) { c.Subject.Organization = []string{"Acme"} },
		"bad-raw-subject":  func(c *x509.Certificate) { c.RawSubject = []byte{0x30, 0} },
		"bad-extra-ext": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: oidCommonName, Value: []byte{5, 0}}}
		},
		"bad-is-ca":       func(c *x509.Certificate) { c.IsCA = true },
		"bad-eku-any":     func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} },
		"bad-aki":         func(c *x509.Certificate) { c.AuthorityKeyId = []byte{1} },
		"bad-policies":    func(c *x509.Certificate) { c.Policies = []x509.OID{{}} },
		"bad-sig-alg":     func(c *x509.Certificate) { c.SignatureAlgorithm = x509.ECDSAWithSHA384 },
		"bad-negative":    func(c *x509.Certificate) { c.SerialNumber = big.NewInt(-1) },
		"bad-constraints": func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example"} },
	} {
		tmpl, err := iss.leafTemplate(req, big.NewInt(1))
		if err != nil {
			t.Fatal(err)
		}
		mutate(tmpl)
		if fastPathTemplate(tmpl) {
			t.Errorf("%s: template is on the fast path", name)
		}
	}
}

// FuzzLeafTBS builds subjects, names and validities from the input: the
// fast path must give CreateCertificate's TBSCertificate, or both must fail.
func FuzzLeafTBS(f *testing.F) {
	f.Add("api.example.internal", "api.example.internal,b.example", "a@example", "spiffe://td/ns/x", []byte{10, 0, 0, 1}, int64(1700000000), int64(3600), []byte{1}, uint8(0))
	f.Add("", "", "", "spiffe://example.internal/sa/web", []byte(nil), int64(2524607999), int64(2), []byte{0x80}, uint8(1))
	f.Add("*.example", "*.example", "", "", []byte(net.ParseIP("fd00::1")), int64(-631152001), int64(1), []byte{0xff, 0xff}, uint8(2))
	f.Add("R&D", "rnd.example", "", "https://x.example/?a=b#c", []byte(net.ParseIP("10.1.1.1")), int64(253402300799), int64(10), []byte{}, uint8(3))
	f.Add("café", "", "ü@example", "", []byte{1, 2, 3}, int64(0), int64(86400), []byte{0, 0, 1}, uint8(4))
	f.Add("a\xff", "b\xfe.example", "", "spiffe://td/\u00fc", []byte{}, int64(-62135596801), int64(100), []byte{7}, uint8(5))
	f.Add(strings.Repeat("x", 65), "long.example", "", "", []byte{}, int64(253402300700), int64(1000), []byte{9}, uint8(6))
	f.Add(strings.Repeat("é", 64), "", "", "urn:x", []byte{}, int64(1e9), int64(1e9), []byte{3}, uint8(7))

	var (
		once    sync.Once
		issuers []testIssuer
	)
	subjectTypes := []keys.KeyType{keys.ECP256, keys.Ed25519}
	f.Fuzz(func(t *testing.T, cn, dns, email, uri string, ip []byte, notBefore, lifetime int64, serial []byte, sel uint8) {
		once.Do(func() { issuers = testIssuers(t) })
		iss := issuers[int(sel)%len(issuers)].iss
		pub := leafKey(t, subjectTypes[int(sel>>4)%len(subjectTypes)]).Public()
		req := LeafRequest{Subject: cn, PublicKey: pub}
		if dns != "" {
			req.Names.DNS = strings.Split(dns, ",")
		}
		if email != "" {
			req.Names.Emails = []string{email}
		}
		if len(ip) > 0 {
			req.Names.IPs = []net.IP{ip}
		}
		if uri != "" {
			if u, err := url.Parse(uri); err == nil {
				req.Names.URIs = []*url.URL{u}
			}
		}
		req.NotBefore = time.Unix(notBefore, int64(sel)*3906250) // sel picks the sub-second part too
		req.NotAfter = req.NotBefore.Add(time.Duration(lifetime) * time.Second)
		tmpl, err := iss.leafTemplate(req, new(big.Int).SetBytes(serial))
		if err != nil {
			return // rejected before either path runs
		}
		fast, slow, fastErr, slowErr := signBothPaths(t, iss, tmpl, pub)
		requireSameLeaf(t, iss, fast, slow, fastErr, slowErr)
	})
}

// BenchmarkSignLeafPath compares the fast path with x509.CreateCertificate
// for one SPIFFE leaf: building, signing and (for CreateCertificate)
// verifying the DER, without parsing it.
func BenchmarkSignLeafPath(b *testing.B) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519} {
		iss := mustIssuer(b, sharedHierarchy(b, kt), DefaultIssuerName)
		pub := leafKey(b, keys.ECP256).Public()
		now := time.Now()
		tmpl, err := iss.leafTemplate(spiffeLeafRequest(pub, now), big.NewInt(1))
		if err != nil {
			b.Fatal(err)
		}
		fs, ok := fastSignerFor(iss.Signer)
		if !ok {
			b.Fatalf("%s is not on the fast path", kt)
		}
		b.Run(string(kt)+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := signLeafFast(fs, tmpl, iss.Cert, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(kt)+"/createcertificate", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Signer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

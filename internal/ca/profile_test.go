package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func sanCritical(t *testing.T, cert *x509.Certificate) bool {
	t.Helper()
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			return ext.Critical
		}
	}
	t.Fatal("no subjectAltName extension")
	return false
}

func TestNewSerialIsPositive128Bits(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 128 {
			t.Fatalf("serial %x is not a positive 128-bit number", n)
		}
		s := store.SerialOf(n)
		if seen[string(s)] {
			t.Fatalf("serial %s repeated", s)
		}
		seen[string(s)] = true
	}
}

func TestSerialStringIsLowercaseHexWithoutLeadingZeros(t *testing.T) {
	for n, want := range map[int64]store.Serial{1: "1", 255: "ff", 4096: "1000", 0xabcdef: "abcdef"} {
		if got := store.SerialOf(big.NewInt(n)); got != want {
			t.Errorf("store.SerialOf(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSignLeafServerProfile(t *testing.T) {
	h := sharedHierarchy(t, keys.ECP256)
	iss := mustIssuer(t, h, DefaultIssuerName)
	now := time.Now().Truncate(time.Second)
	req := serverLeafRequest(leafKey(t, keys.ECP256).Public(), now)
	leaf := mustSign(t, iss, req)

	if leaf.Subject.CommonName != "api.example.internal" || len(leaf.Subject.Names) != 1 {
		t.Errorf("subject = %q", leaf.Subject)
	}
	if !slices.Equal(leaf.DNSNames, req.Names.DNS) || len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(req.Names.IPs[0]) || !leaf.IPAddresses[1].Equal(req.Names.IPs[1]) {
		t.Errorf("names = %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if len(leaf.URIs) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Error("names not asked for were added")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %b, want digitalSignature", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("extended key usage = %v", leaf.ExtKeyUsage)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Error("leaf basic constraints are not CA:FALSE")
	}
	wantSKI, err := subjectKeyID(req.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.SubjectKeyId, wantSKI) || !bytes.Equal(leaf.AuthorityKeyId, iss.Cert.SubjectKeyId) {
		t.Error("key identifiers are wrong")
	}
	if !leaf.NotBefore.Equal(now) || !leaf.NotAfter.Equal(req.NotAfter) {
		t.Errorf("validity = %s to %s, want %s to %s", leaf.NotBefore, leaf.NotAfter, now, req.NotAfter)
	}
	if sanCritical(t, leaf) {
		t.Error("subjectAltName is critical although the subject is not empty")
	}
	if leaf.SerialNumber.BitLen() > 128 || leaf.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %x", leaf.SerialNumber)
	}
	if got := iss.Chain(); len(got) != 1 || got[0] != iss.Cert {
		t.Error("Chain is not the issuer certificate")
	}
	verifyLeaf(t, h, leaf, now)
}

func TestSignLeafSPIFFEProfileHasEmptySubjectAndCriticalSAN(t *testing.T) {
	h := sharedHierarchy(t, keys.ECP256)
	now := time.Now()
	leaf := mustSign(t, mustIssuer(t, h, DefaultIssuerName), spiffeLeafRequest(leafKey(t, keys.ECP256).Public(), now))
	if len(leaf.RawSubject) != 2 { // an empty SEQUENCE
		t.Errorf("subject = %q, want empty", leaf.Subject)
	}
	if !sanCritical(t, leaf) {
		t.Error("subjectAltName is not critical although the subject is empty")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.internal/ns/app" || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("names = %v", leaf.URIs)
	}
	verifyLeaf(t, h, leaf, now)
}

func TestSignLeafAddsKeyEnciphermentForRSAKeysOnly(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048} {
		leaf := mustSign(t, iss, clientLeafRequest(leafKey(t, kt).Public(), time.Now()))
		want := x509.KeyUsageDigitalSignature
		if kt == keys.RSA2048 {
			want |= x509.KeyUsageKeyEncipherment
		}
		if leaf.KeyUsage != want {
			t.Errorf("%s: key usage = %b, want %b", kt, leaf.KeyUsage, want)
		}
	}
}

func TestSignLeafLeavesOutLongCommonName(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	req := serverLeafRequest(leafKey(t, keys.ECP256).Public(), time.Now())
	req.Subject = strings.Repeat("a", 60) + ".example.internal"
	leaf := mustSign(t, iss, req)
	if leaf.Subject.CommonName != "" || !sanCritical(t, leaf) {
		t.Errorf("CN = %q; want none, and a critical subjectAltName", leaf.Subject.CommonName)
	}
	req.Subject = strings.Repeat("é", 64) // 64 characters, 128 bytes
	if leaf := mustSign(t, iss, req); leaf.Subject.CommonName != req.Subject {
		t.Error("a 64-character CN was left out")
	}
}

func TestSignLeafRejectsBadRequests(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	pub := leafKey(t, keys.ECP256).Public()
	now := time.Now()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*LeafRequest){
		"bad-no-key":             func(r *LeafRequest) { r.PublicKey = nil },
		"bad-rsa-1024":           func(r *LeafRequest) { r.PublicKey = &weak.PublicKey },
		"bad-p224":               func(r *LeafRequest) { r.PublicKey = &p224.PublicKey },
		"bad-no-names":           func(r *LeafRequest) { r.Names = policy.Names{}; r.Subject = "" },
		"bad-ends-before-starts": func(r *LeafRequest) { r.NotAfter = r.NotBefore.Add(-time.Second) },
		"bad-starts-after-issuer-expires": func(r *LeafRequest) {
			r.NotBefore = iss.Cert.NotAfter.Add(time.Hour)
			r.NotAfter = r.NotBefore.Add(time.Hour)
		},
	} {
		t.Run(name, func(t *testing.T) {
			req := serverLeafRequest(pub, now)
			mutate(&req)
			if cert, err := iss.SignLeaf(req); err == nil {
				t.Fatalf("SignLeaf succeeded: serial %x", cert.SerialNumber)
			}
		})
	}
}

func TestSubjectKeyIDMatchesCryptoX509(t *testing.T) {
	// crypto/x509 derives CA key identifiers with RFC 7093 method 1 too; the
	// two must agree so that leaves and CA certificates use one method.
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048} {
		key := leafKey(t, kt)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true,
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		got, err := subjectKeyID(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, cert.SubjectKeyId) {
			t.Errorf("%s: subjectKeyID = %x, crypto/x509 = %x", kt, got, cert.SubjectKeyId)
		}
	}
}

// TestOpenSSLVerifiesEveryProfile checks the chains with a second,
// independent implementation.
func TestOpenSSLVerifiesEveryProfile(t *testing.T) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			h := sharedHierarchy(t, kt)
			iss := mustIssuer(t, h, DefaultIssuerName)
			pub := leafKey(t, kt).Public()
			now := time.Now()
			for _, p := range []struct {
				name    string
				req     LeafRequest
				purpose string
			}{
				{"server", serverLeafRequest(pub, now), "sslserver"},
				{"client", clientLeafRequest(pub, now), "sslclient"},
				{"spiffe", spiffeLeafRequest(pub, now), "sslclient"},
			} {
				opensslVerify(t, h, mustSign(t, iss, p.req), p.purpose)
			}
		})
	}
}

func TestOpenSSLVerifiesAcrossRotation(t *testing.T) {
	h, _, _ := newHierarchy(t, InitOptions{})
	pub := leafKey(t, keys.ECP256).Public()
	old := mustSign(t, mustIssuer(t, h, DefaultIssuerName), spiffeLeafRequest(pub, time.Now()))
	gen2, err := h.RotateIntermediate(context.Background(), DefaultIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, h, old, "sslserver")
	opensslVerify(t, h, mustSign(t, gen2, serverLeafRequest(pub, time.Now())), "sslserver")
}

// opensslVerify runs openssl verify -CAfile roots.pem -untrusted
// intermediates.pem leaf.pem, with the given -purpose.
func opensslVerify(t *testing.T, h *Hierarchy, leaf *x509.Certificate, purpose string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for this test: %v", err)
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"roots.pem":         h.RootsPEM(),
		"intermediates.pem": h.IntermediatesPEM(time.Now()),
		"leaf.pem":          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "verify", "-purpose", purpose, "-CAfile", "roots.pem", "-untrusted", "intermediates.pem", "leaf.pem")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leaf.pem: OK") {
		t.Errorf("openssl verify of leaf %x (%s): %v\n%s", leaf.SerialNumber, leafNames(leaf), err, out)
	}
}

func leafNames(c *x509.Certificate) string {
	names := slices.Concat(c.DNSNames, c.EmailAddresses)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return strings.Join(names, ",")
}

func BenchmarkSignLeaf(b *testing.B) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.Ed25519} {
		b.Run(string(kt), func(b *testing.B) {
			iss := mustIssuer(b, sharedHierarchy(b, kt), DefaultIssuerName)
			pub := leafKey(b, keys.ECP256).Public()
			uri, _ := url.Parse("spiffe://example.internal/ns/app")
			now := time.Now()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, err := iss.SignLeaf(LeafRequest{Names: policy.Names{URIs: []*url.URL{uri}}, PublicKey: pub, NotBefore: now, NotAfter: now.Add(time.Hour)})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

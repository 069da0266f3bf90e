package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmap/zlint/v3/lint"

	"github.com/meshpki/meshpki/internal/certlint"
	"github.com/meshpki/meshpki/internal/keys"
)

// publicTrustSources are the CA/Browser Forum requirements and the root
// programs' policies. They govern publicly trusted CAs, not a private mesh
// CA, so the test only logs their findings (see docs/LINTS.md).
var publicTrustSources = lint.SourceList{
	lint.CABFBaselineRequirements, lint.CABFSMIMEBaselineRequirements, lint.CABFEVGuidelines, lint.CABFCSBaselineRequirements,
	lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy, lint.ChromeRootStorePolicy, lint.EtsiEsi,
}

type lintedProfile struct {
	name string
	cert *x509.Certificate
}

// profileCerts returns one certificate of every profile for key type kt.
func profileCerts(t *testing.T, kt keys.KeyType) []lintedProfile {
	t.Helper()
	h := sharedHierarchy(t, kt)
	iss := mustIssuer(t, h, DefaultIssuerName)
	pub := leafKey(t, kt).Public()
	now := time.Now()
	return []lintedProfile{
		{"root", h.Root()},
		{"intermediate", iss.Cert},
		{"server", mustSign(t, iss, serverLeafRequest(pub, now))},
		{"client", mustSign(t, iss, clientLeafRequest(pub, now))},
		{"spiffe", mustSign(t, iss, spiffeLeafRequest(pub, now))},
	}
}

// runLints returns the results of status min or worse from the lints of
// sources.
func runLints(t *testing.T, sources lint.SourceList, cert *x509.Certificate, min lint.LintStatus) []certlint.Finding {
	t.Helper()
	l, err := certlint.New(sources)
	if err != nil {
		t.Fatal(err)
	}
	findings, err := l.Run(cert.Raw, min)
	if err != nil {
		t.Fatal(err)
	}
	return findings
}

var lintKeyTypes = []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048}

func TestProfilesPassRFCAndCommunityLints(t *testing.T) {
	reg := certlint.Default().Registry()
	if n := len(reg.Names()); n < 100 {
		t.Fatalf("only %d lints selected; the source filter is wrong", n)
	}
	for _, src := range certlint.Sources {
		t.Logf("%s: %d lints", src, len(reg.BySource(src)))
	}
	for _, kt := range lintKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			for _, p := range profileCerts(t, kt) {
				for _, f := range runLints(t, certlint.Sources, p.cert, lint.Warn) {
					t.Errorf("%s %s: %s %s (%s %s): %s", kt, p.name, f.Status, f.Lint, f.Source, f.Citation, f.Details)
				}
			}
		})
	}
}

// TestLogPublicTrustLints reports, without failing, what the CA/Browser
// Forum and root-program lints say about each profile, and any notices of
// the RFC and community lints. Run it with -v to
// refresh the table in docs/LINTS.md.
func TestLogPublicTrustLints(t *testing.T) {
	type row struct{ profiles []string }
	byLint := map[string]*row{}
	details := map[string]string{}
	for _, kt := range lintKeyTypes {
		for _, p := range profileCerts(t, kt) {
			for _, f := range slices.Concat(runLints(t, publicTrustSources, p.cert, lint.Warn), runLints(t, certlint.Sources, p.cert, lint.Notice)) {
				key := fmt.Sprintf("%s\t%s\t%s", f.Source, f.Status, f.Lint)
				r := byLint[key]
				if r == nil {
					r = &row{}
					byLint[key] = r
					details[key] = f.Details
				}
				label := p.name + "/" + string(kt)
				if !slices.Contains(r.profiles, label) {
					r.profiles = append(r.profiles, label)
				}
			}
		}
	}
	keysSorted := make([]string, 0, len(byLint))
	for k := range byLint {
		keysSorted = append(keysSorted, k)
	}
	slices.Sort(keysSorted)
	for _, k := range keysSorted {
		t.Logf("%s\t%s\t%s", k, strings.Join(byLint[k].profiles, ","), details[k])
	}
}

// TestLintHarnessReportsFindings makes sure the harness above would fail: a
// certificate with a 65-character common name, which SignLeaf never makes,
// must trip an RFC 5280 lint.
func TestLintHarnessReportsFindings(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	serial, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: strings.Repeat("a", 65)},
		NotBefore:    now,
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     []string{"a.example.internal"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, leafKey(t, keys.ECP256).Public(), iss.Signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	findings := runLints(t, certlint.Sources, cert, lint.Warn)
	if !slices.ContainsFunc(findings, func(f certlint.Finding) bool { return f.Lint == "e_subject_common_name_max_length" }) {
		t.Errorf("findings = %v, want e_subject_common_name_max_length", findings)
	}
}

// countingSigner is an opaque issuer key (so the slow path signs) that
// counts its signatures.
type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (s countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

// TestSignLeafLintsBeforeSigning: a leaf that would fail an RFC lint is
// refused with an error naming the lint, on the fast path and on the
// x509.CreateCertificate path, and the issuer's key never signs it.
func TestSignLeafLintsBeforeSigning(t *testing.T) {
	for _, kt := range []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			real := mustIssuer(t, sharedHierarchy(t, kt), DefaultIssuerName)
			var signed atomic.Int64
			opaque := *real
			opaque.Signer = countingSigner{Signer: real.Signer, n: &signed}
			pub := leafKey(t, keys.ECP256).Public()
			now := time.Now()
			bad := serverLeafRequest(pub, now)
			bad.Names.DNS = []string{"under_score.example.internal"}
			for _, iss := range []*Issuer{real, &opaque} {
				_, err := iss.SignLeaf(bad)
				var le *certlint.Error
				if !errors.As(err, &le) {
					t.Fatalf("SignLeaf(under_score) error = %v, want a *certlint.Error", err)
				}
				if !strings.Contains(err.Error(), "would fail lint w_rfc_dnsname_underscore_in_trd (RFC5280: 4.1.2.6)") {
					t.Errorf("error %q does not name the underscore lint", err)
				}
			}
			if n := signed.Load(); n != 0 {
				t.Fatalf("the issuer key signed %d times for a refused certificate", n)
			}
			for _, iss := range []*Issuer{real, &opaque} {
				cert := mustSign(t, iss, serverLeafRequest(pub, now))
				if err := cert.CheckSignatureFrom(real.Cert); err != nil {
					t.Fatalf("linted leaf does not verify: %v", err)
				}
			}
			if n := signed.Load(); n != 1 {
				t.Fatalf("the issuer key signed %d times for one certificate, want 1", n)
			}
		})
	}
}

// TestTBSOf: tbsOf returns the TBSCertificate x509 parses, and nil for
// what is not a certificate.
func TestTBSOf(t *testing.T) {
	iss := mustIssuer(t, sharedHierarchy(t, keys.ECP256), DefaultIssuerName)
	cert := mustSign(t, iss, serverLeafRequest(leafKey(t, keys.ECP256).Public(), time.Now()))
	if !bytes.Equal(tbsOf(cert.Raw), cert.RawTBSCertificate) {
		t.Fatal("tbsOf differs from RawTBSCertificate")
	}
	for _, junk := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x02, 0x01, 0x00}} {
		if tbsOf(junk) != nil {
			t.Errorf("tbsOf(%x) is not nil", junk)
		}
	}
}

package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/meshpki/meshpki/internal/keys"
)

// rfcSources are the lint sources every profile must pass: the RFCs and the
// community lints. docs/LINTS.md records the outcome.
var rfcSources = lint.SourceList{
	lint.RFC3279, lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.RFC6960, lint.RFC6962, lint.RFC8813,
	lint.Community,
}

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

func filteredRegistry(t *testing.T, sources lint.SourceList) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: sources})
	if err != nil {
		t.Fatalf("filter zlint registry: %v", err)
	}
	return reg
}

type lintFinding struct {
	lint, status, details, source, citation string
}

// runLints returns the results of status min or worse.
func runLints(t *testing.T, reg lint.Registry, cert *x509.Certificate, min lint.LintStatus) []lintFinding {
	t.Helper()
	zc, err := zx509.ParseCertificate(cert.Raw)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the certificate: %v", err)
	}
	var findings []lintFinding
	for name, res := range zlint.LintCertificateEx(zc, reg).Results {
		if res.Status < min {
			continue
		}
		f := lintFinding{lint: name, status: res.Status.String(), details: res.Details}
		if l := reg.ByName(name); l != nil {
			f.source, f.citation = string(l.Source), l.Citation
		}
		findings = append(findings, f)
	}
	slices.SortFunc(findings, func(a, b lintFinding) int { return strings.Compare(a.lint, b.lint) })
	return findings
}

var lintKeyTypes = []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048}

func TestProfilesPassRFCAndCommunityLints(t *testing.T) {
	reg := filteredRegistry(t, rfcSources)
	if n := len(reg.Names()); n < 100 {
		t.Fatalf("only %d lints selected; the source filter is wrong", n)
	}
	for _, src := range rfcSources {
		t.Logf("%s: %d lints", src, len(reg.BySource(src)))
	}
	for _, kt := range lintKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			for _, p := range profileCerts(t, kt) {
				for _, f := range runLints(t, reg, p.cert, lint.Warn) {
					t.Errorf("%s %s: %s %s (%s %s): %s", kt, p.name, f.status, f.lint, f.source, f.citation, f.details)
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
	reg := filteredRegistry(t, publicTrustSources)
	rfcReg := filteredRegistry(t, rfcSources)
	type row struct{ profiles []string }
	byLint := map[string]*row{}
	details := map[string]string{}
	for _, kt := range lintKeyTypes {
		for _, p := range profileCerts(t, kt) {
			for _, f := range slices.Concat(runLints(t, reg, p.cert, lint.Warn), runLints(t, rfcReg, p.cert, lint.Notice)) {
				key := fmt.Sprintf("%s\t%s\t%s", f.source, f.status, f.lint)
				r := byLint[key]
				if r == nil {
					r = &row{}
					byLint[key] = r
					details[key] = f.details
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
	findings := runLints(t, filteredRegistry(t, rfcSources), cert, lint.Warn)
	if !slices.ContainsFunc(findings, func(f lintFinding) bool { return f.lint == "e_subject_common_name_max_length" }) {
		t.Errorf("findings = %v, want e_subject_common_name_max_length", findings)
	}
}

package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseFile(t *testing.T, name string) ([]Certificate, []Warning) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	certs, warnings, err := Parse(name, f)
	if err != nil {
		t.Fatal(err)
	}
	return certs, warnings
}

// cert-manager's own exhaustive example reads unchanged; what has no
// effect outside Kubernetes is a warning naming its line.
func TestCertManagerDocsExample(t *testing.T) {
	certs, warnings := parseFile(t, "cert-manager-docs.yaml")
	if len(certs) != 1 {
		t.Fatalf("%d certificates", len(certs))
	}
	c := certs[0]
	s := c.Spec
	if c.Metadata.Name != "example-com" || c.Metadata.Namespace != "sandbox" || s.SecretName != "example-com-tls" || s.CommonName != "example.com" ||
		len(s.DNSNames) != 2 || s.URIs[0] != "spiffe://cluster.local/ns/sandbox/sa/example" || s.IPAddresses[0] != "192.168.0.5" ||
		s.IssuerRef != (IssuerRef{Name: "ca-issuer", Kind: "Issuer", Group: "cert-manager.io"}) || s.Duration != "2160h" || s.RenewBefore != "360h" ||
		s.PrivateKey != (PrivateKey{Algorithm: "RSA", Encoding: "PKCS1", Size: 2048, RotationPolicy: "Always"}) ||
		s.Subject.Organizations[0] != "jetstack" || len(s.Usages) != 2 || c.Line != 4 {
		t.Errorf("parsed %+v", c)
	}
	if s.Meshpki == nil || s.Meshpki.Dir != "/var/lib/meshpki/certs/example-com-tls" || s.Meshpki.Cert != "tls.crt" || s.Meshpki.Key != "tls.key" ||
		s.Meshpki.CA != "ca.crt" || s.Meshpki.Mode != "0644" || s.Meshpki.KeyMode != "0600" {
		t.Errorf("defaults %+v", s.Meshpki)
	}
	if len(warnings) != 1 || warnings[0].Line != 19 || !strings.Contains(warnings[0].Msg, "secretTemplate has no effect") {
		t.Errorf("warnings %v", warnings)
	}
}

// Several documents in a file: Certificates with meshpki's block, and
// other kinds skipped.
func TestSeveralManifestsWithMeshpkiBlock(t *testing.T) {
	certs, warnings := parseFile(t, "nginx.yaml")
	if len(certs) != 2 || len(warnings) != 1 || !strings.Contains(warnings[0].String(), "nginx.yaml:31: skipped: a Issuer") {
		t.Fatalf("%d certificates, warnings %v", len(certs), warnings)
	}
	web, api := certs[0].Spec, certs[1].Spec
	m := web.Meshpki
	if web.PrivateKey != (PrivateKey{Algorithm: "ECDSA", Size: 256, Encoding: "PKCS8", RotationPolicy: "Always"}) || m.Dir != "/etc/nginx/tls" ||
		m.Group != "www-data" || m.KeyMode != "0640" || m.Combined != "web.pem" || len(m.Hooks) != 2 ||
		m.Hooks[0].Signal.Signal != "HUP" || m.Hooks[0].Timeout != "10s" || m.Hooks[1].Timeout != "30s" || m.Hooks[1].OnFailure != "continue" {
		t.Errorf("web %+v %+v", web, m)
	}
	if api.IssuerRef.Kind != "ACMEIssuer" || api.Meshpki.ACME != "https://acme.example.internal/directory" || api.Meshpki.Hooks[0].HTTP.Method != "POST" {
		t.Errorf("api %+v", api)
	}
}

// Every mistake is an *Error naming the file and the line it is on.
func TestMistakesNameFileAndLine(t *testing.T) {
	const head = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: x\nspec:\n  secretName: x-tls\n  issuerRef: {name: p}\n"
	for _, tc := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		// The YAML library names the line before an unclosed bracket at the end of the file.
		{"bad yaml", head + "  dnsNames: [a.example\n", 7, "did not find expected"},
		{"bad indentation", head + "  dnsNames:\n  - a\n   b: c\n", 10, "mapping values are not allowed"},
		{"tab", head + "\tdnsNames: [a]\n", 8, "found character that cannot start any token"},
		{"unknown field", head + "  dnsNames: [a.example]\n  dnsName: [b]\n", 9, "unknown field spec.dnsName"},
		{"unknown meshpki field", head + "  dnsNames: [a.example]\n  meshpki:\n    dir: /x\n    hook: []\n", 11, "unknown field spec.meshpki.hook"},
		{"wrong type", head + "  dnsNames: a.example\n", 8, "cannot unmarshal"},
		{"no names", head, 6, "at least one of commonName"},
		{"bad ip", head + "  ipAddresses: [10.0.0.300]\n", 8, `ipAddresses[0] "10.0.0.300"`},
		{"renewBefore too long", head + "  dnsNames: [a]\n  duration: 1h\n  renewBefore: 2h\n", 10, "not shorter than the duration"},
		{"bad key size", head + "  dnsNames: [a]\n  privateKey: {algorithm: ECDSA, size: 521}\n", 9, "256 or 384"},
		{"ca", head + "  dnsNames: [a]\n  isCA: true\n", 9, "leaf certificates only"},
		{"relative dir", head + "  dnsNames: [a]\n  meshpki: {dir: tls}\n", 9, "absolute path"},
		{"file escapes", head + "  dnsNames: [a]\n  meshpki: {dir: /x, key: ../../etc/shadow}\n", 9, "a file name inside dir"},
		{"world-readable key", head + "  dnsNames: [a]\n  meshpki: {dir: /x, keyMode: \"0644\"}\n", 9, "lets everyone read the key"},
		{"two hook kinds", head + "  dnsNames: [a]\n  meshpki:\n    hooks:\n    - {command: [/bin/true], http: {url: http://x}}\n", 11, "exactly one of"},
		{"relative command", head + "  dnsNames: [a]\n  meshpki:\n    hooks:\n    - command: [systemctl, reload, nginx]\n", 11, "absolute path"},
		{"keystore without password", head + "  dnsNames: [a]\n  meshpki: {dir: /x, pkcs12: a.p12}\n", 9, "pkcs12PasswordFile"},
		{"acme without url", "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec:\n  secretName: s\n  issuerRef: {name: p, kind: ACMEIssuer}\n  dnsNames: [a]\n", 6, "directory URL"},
		{"old api", "apiVersion: cert-manager.io/v1alpha2\nkind: Certificate\n", 1, "cert-manager.io/v1"},
		{"duplicate", head + "  dnsNames: [a]\n---\n" + head + "  dnsNames: [a]\n", 10, "a second Certificate"},
	} {
		_, _, err := Parse("certs.yaml", strings.NewReader(tc.yaml))
		var e *Error
		if !errors.As(err, &e) || e.File != "certs.yaml" || e.Line != tc.line || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%s: %v (line %d), want line %d …%s…", tc.name, err, lineOfErr(e), tc.line, tc.want)
		}
	}
}

func lineOfErr(e *Error) int {
	if e == nil {
		return 0
	}
	return e.Line
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"cert-manager-docs.yaml", "nginx.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("kind: Certificate\napiVersion: cert-manager.io/v1\nspec: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, _, err := Parse("fuzz.yaml", strings.NewReader(string(data)))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		for _, c := range certs {
			if c.Spec.SecretName == "" || c.Spec.IssuerRef.Name == "" || c.Spec.Meshpki == nil || !filepath.IsAbs(c.Spec.Meshpki.Dir) {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}

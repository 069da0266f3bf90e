// Package manifest owns declared certificates: it reads cert-manager.io/v1
// Certificate manifests, unchanged, plus meshpki's block (spec.meshpki,
// which cert-manager's schema prunes) that says where on this machine the
// files go and what to run after each renewal. It checks every field and
// says which file and line a mistake is on; it does not issue anything.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/meshpki/meshpki/internal/duration"
)

// Certificate is one Certificate manifest.
type Certificate struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// File and Line say where the manifest starts.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Metadata is the manifest's Kubernetes object metadata.
type Metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Spec is cert-manager's CertificateSpec, and meshpki's block.
type Spec struct {
	SecretName     string      `yaml:"secretName"`
	IssuerRef      IssuerRef   `yaml:"issuerRef"`
	CommonName     string      `yaml:"commonName"`
	DNSNames       []string    `yaml:"dnsNames"`
	IPAddresses    []string    `yaml:"ipAddresses"`
	URIs           []string    `yaml:"uris"`
	EmailAddresses []string    `yaml:"emailAddresses"`
	Duration       string      `yaml:"duration"`
	RenewBefore    string      `yaml:"renewBefore"`
	PrivateKey     PrivateKey  `yaml:"privateKey"`
	Usages         []string    `yaml:"usages"`
	Subject        Subject     `yaml:"subject"`
	IsCA           bool        `yaml:"isCA"`
	Meshpki        *Local      `yaml:"meshpki"`
	Ignored        ignoredSpec `yaml:",inline"`
}

// ignoredSpec are cert-manager fields meshpki accepts and does not act on;
// each set one is a warning.
type ignoredSpec struct {
	SecretTemplate          *yaml.Node `yaml:"secretTemplate"`
	Keystores               *yaml.Node `yaml:"keystores"`
	AdditionalOutputFormats *yaml.Node `yaml:"additionalOutputFormats"`
	NameConstraints         *yaml.Node `yaml:"nameConstraints"`
	OtherNames              *yaml.Node `yaml:"otherNames"`
	LiteralSubject          *yaml.Node `yaml:"literalSubject"`
	RevisionHistoryLimit    *yaml.Node `yaml:"revisionHistoryLimit"`
	EncodeUsagesInRequest   *yaml.Node `yaml:"encodeUsagesInRequest"`
	RenewBeforePercentage   *yaml.Node `yaml:"renewBeforePercentage"`
}

// IssuerRef names the issuer: a meshpki provisioner (kind Issuer or
// ClusterIssuer of group cert-manager.io, or meshpki.io), or an ACME
// server (kind ACMEIssuer, its directory URL in meshpki.acme).
type IssuerRef struct {
	Name  string `yaml:"name"`
	Kind  string `yaml:"kind"`
	Group string `yaml:"group"`
}

// PrivateKey is how the key is made and written.
type PrivateKey struct {
	Algorithm      string `yaml:"algorithm"`      // RSA (default), ECDSA, Ed25519
	Size           int    `yaml:"size"`           // RSA 2048 (default), 3072, 4096; ECDSA 256 (default), 384
	Encoding       string `yaml:"encoding"`       // PKCS1 (default) or PKCS8
	RotationPolicy string `yaml:"rotationPolicy"` // Always (default, as cert-manager 1.18) or Never
}

// Subject is the certificate's distinguished name beyond the common name.
type Subject struct {
	Organizations       []string `yaml:"organizations"`
	Countries           []string `yaml:"countries"`
	OrganizationalUnits []string `yaml:"organizationalUnits"`
	Localities          []string `yaml:"localities"`
	Provinces           []string `yaml:"provinces"`
	StreetAddresses     []string `yaml:"streetAddresses"`
	PostalCodes         []string `yaml:"postalCodes"`
	SerialNumber        string   `yaml:"serialNumber"`
}

// Local is spec.meshpki: where the files go on this machine, in which
// formats, owned by whom, and what runs after each renewal.
type Local struct {
	// Dir holds the files (default /var/lib/meshpki/certs/SECRET-NAME).
	Dir string `yaml:"dir"`
	// DirDefaulted says Dir was not given: an agent whose first
	// certificate root is elsewhere writes to ROOT/SECRET-NAME instead.
	DirDefaulted bool `yaml:"-"`
	// The file names inside Dir, as a kubernetes.io/tls Secret's keys:
	// tls.crt (the leaf and its chain), tls.key, ca.crt. Combined, if
	// set, is the key followed by the chain in one file (HAProxy);
	// PKCS12 and JKS, if set, are keystores (PKCS12Password names the
	// file holding their password).
	Cert           string `yaml:"cert"`
	Key            string `yaml:"key"`
	CA             string `yaml:"ca"`
	Combined       string `yaml:"combined"`
	PKCS12         string `yaml:"pkcs12"`
	JKS            string `yaml:"jks"`
	PKCS12Password string `yaml:"pkcs12PasswordFile"`
	// Owner and Group own the files; Mode is the certificates' (default
	// 0644) and KeyMode the key's and keystores' (default 0600).
	Owner   string `yaml:"owner"`
	Group   string `yaml:"group"`
	Mode    string `yaml:"mode"`
	KeyMode string `yaml:"keyMode"`
	// ACME is the directory URL of the ACME server an issuerRef of kind
	// ACMEIssuer names.
	ACME  string `yaml:"acme"`
	Hooks []Hook `yaml:"hooks"`
}

// Hook runs after the files are written: exactly one of Signal, Command
// and HTTP.
type Hook struct {
	Name    string      `yaml:"name"`
	Signal  *SignalHook `yaml:"signal"`
	Command []string    `yaml:"command"`
	HTTP    *HTTPHook   `yaml:"http"`
	// Timeout bounds the hook (default 30s); OnFailure is "continue" (the
	// default: report, and run the next hook) or "stop" (skip the rest).
	Timeout   string `yaml:"timeout"`
	OnFailure string `yaml:"onFailure"`
}

// SignalHook signals the process whose PID is in PIDFile.
type SignalHook struct {
	PIDFile string `yaml:"pidFile"`
	Signal  string `yaml:"signal"` // HUP (default), USR1, USR2, TERM
}

// HTTPHook calls URL.
type HTTPHook struct {
	URL    string `yaml:"url"`
	Method string `yaml:"method"` // POST (default), GET, PUT
}

// Warning is something in a manifest that has no effect here.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Error is a mistake in a manifest, at a file and line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// maxManifestSize bounds one file.
const maxManifestSize = 1 << 20

// Parse reads every document of a manifest file: Certificates are checked
// and returned with their defaults filled in; documents of other kinds
// (an Issuer, a Secret) are skipped with a warning. The first mistake is
// an *Error naming file and line.
func Parse(file string, r io.Reader) ([]Certificate, []Warning, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, nil, &Error{File: file, Msg: err.Error()}
	}
	if len(data) > maxManifestSize {
		return nil, nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", maxManifestSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var (
		certs    []Certificate
		warnings []Warning
		names    = map[string]int{}
	)
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, yamlError(file, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return nil, nil, &Error{File: file, Line: root.Line, Msg: "a manifest is a mapping (apiVersion, kind, metadata, spec)"}
		}
		kind, apiVersion := scalarField(root, "kind"), scalarField(root, "apiVersion")
		if kind != "Certificate" {
			warnings = append(warnings, Warning{file, root.Line, fmt.Sprintf("skipped: a %s, not a Certificate", orNone(kind))})
			continue
		}
		if apiVersion != "cert-manager.io/v1" {
			return nil, nil, &Error{File: file, Line: root.Line, Msg: fmt.Sprintf("apiVersion %q: meshpki reads cert-manager.io/v1 Certificates", clip(apiVersion))}
		}
		if err := checkFields(file, root, reflect.TypeOf(Certificate{}), ""); err != nil {
			return nil, nil, err
		}
		var c Certificate
		if err := root.Decode(&c); err != nil {
			return nil, nil, yamlError(file, err)
		}
		c.File, c.Line = file, root.Line
		w, err := c.check(root)
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, w...)
		key := c.Metadata.Namespace + "/" + c.Metadata.Name
		if line, dup := names[key]; dup {
			return nil, nil, &Error{File: file, Line: root.Line, Msg: fmt.Sprintf("a second Certificate named %q (the first is at line %d)", c.Metadata.Name, line)}
		}
		names[key] = root.Line
		certs = append(certs, c)
	}
	return certs, warnings, nil
}

// yamlError turns the YAML library's error into an *Error with the line
// it names.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, strings.TrimSpace(after)
			}
		}
	}
	if strings.HasPrefix(msg, "unmarshal errors:") {
		// "unmarshal errors:\n  line 7: cannot unmarshal …"
		for _, l := range strings.Split(msg, "\n")[1:] {
			l = strings.TrimSpace(l)
			if rest, ok := strings.CutPrefix(l, "line "); ok {
				if n, after, ok := strings.Cut(rest, ":"); ok {
					if v, err := strconv.Atoi(n); err == nil {
						return &Error{File: file, Line: v, Msg: strings.TrimSpace(after)}
					}
				}
			}
		}
	}
	return &Error{File: file, Line: line, Msg: "malformed YAML: " + msg}
}

// checkFields refuses a key the type does not have, naming its line, so
// that a misspelt field is a mistake rather than a default.
func checkFields(file string, n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
			for _, item := range n.Content {
				if err := checkFields(file, item, t.Elem(), path+"[]"); err != nil {
					return err
				}
			}
			return nil
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode || t == reflect.TypeOf(yaml.Node{}) {
		return nil
	}
	fields := map[string]reflect.Type{}
	var collect func(reflect.Type)
	collect = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			switch {
			case name == "-":
			case opts == "inline":
				collect(f.Type)
			case name != "":
				fields[name] = f.Type
			}
		}
	}
	collect(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			return &Error{File: file, Line: k.Line, Msg: fmt.Sprintf("unknown field %s%s", path, clip(k.Value))}
		}
		if err := checkFields(file, v, ft, path+k.Value+"."); err != nil {
			return err
		}
	}
	return nil
}

// scalarField is the value of a top-level scalar key of a mapping.
func scalarField(m *yaml.Node, key string) string {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.ScalarNode {
			return m.Content[i+1].Value
		}
	}
	return ""
}

// lineOf is the line of the value at path (keys separated by dots) in the
// mapping m, or m's own line when there is none.
func lineOf(m *yaml.Node, path string) int {
	n := m
	for _, key := range strings.Split(path, ".") {
		next := (*yaml.Node)(nil)
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return n.Line
		}
		n = next
	}
	return n.Line
}

// The cert-manager key usages (KeyUsage in its API reference).
var usages = map[string]bool{
	"signing": true, "digital signature": true, "content commitment": true, "key encipherment": true, "key agreement": true,
	"data encipherment": true, "cert sign": true, "crl sign": true, "encipher only": true, "decipher only": true, "any": true,
	"server auth": true, "client auth": true, "code signing": true, "email protection": true, "s/mime": true, "ipsec end system": true,
	"ipsec tunnel": true, "ipsec user": true, "timestamping": true, "ocsp signing": true, "microsoft sgc": true, "netscape sgc": true,
}

// Defaults of cert-manager, and meshpki's for the local block.
const (
	DefaultDuration = 90 * 24 * time.Hour
	DefaultDir      = "/var/lib/meshpki/certs"
	defaultHookWait = 30 * time.Second
)

// check validates c against the rules cert-manager and meshpki share, fills
// in defaults, and returns warnings for fields without effect here.
func (c *Certificate) check(root *yaml.Node) ([]Warning, error) {
	bad := func(path, format string, args ...any) error {
		return &Error{File: c.File, Line: lineOf(root, path), Msg: fmt.Sprintf(format, args...)}
	}
	s := &c.Spec
	if c.Metadata.Name == "" {
		return nil, bad("metadata", "metadata.name is required")
	}
	if s.SecretName == "" {
		return nil, bad("spec", "spec.secretName is required")
	}
	if strings.ContainsAny(s.SecretName, "/\\") || s.SecretName == "." || s.SecretName == ".." {
		return nil, bad("spec.secretName", "secretName %q is not a name", clip(s.SecretName))
	}
	if s.IssuerRef.Name == "" {
		return nil, bad("spec.issuerRef", "spec.issuerRef.name is required")
	}
	switch s.IssuerRef.Kind {
	case "":
		s.IssuerRef.Kind = "Issuer"
	case "Issuer", "ClusterIssuer", "ACMEIssuer":
	default:
		return nil, bad("spec.issuerRef.kind", "issuerRef.kind %q: meshpki issues for Issuer, ClusterIssuer (a provisioner) and ACMEIssuer", clip(s.IssuerRef.Kind))
	}
	if len(s.DNSNames)+len(s.IPAddresses)+len(s.URIs)+len(s.EmailAddresses) == 0 && s.CommonName == "" {
		return nil, bad("spec", "at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required")
	}
	for i, ip := range s.IPAddresses {
		if net.ParseIP(ip) == nil {
			return nil, bad("spec.ipAddresses", "ipAddresses[%d] %q is not an IP address", i, clip(ip))
		}
	}
	for i, u := range s.URIs {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" {
			return nil, bad("spec.uris", "uris[%d] %q is not an absolute URI", i, clip(u))
		}
	}
	for i, e := range s.EmailAddresses {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			return nil, bad("spec.emailAddresses", "emailAddresses[%d] %q is not an email address", i, clip(e))
		}
	}
	life := DefaultDuration
	if s.Duration != "" {
		d, err := duration.Parse(s.Duration)
		if err != nil || d <= 0 {
			return nil, bad("spec.duration", "duration %q is not a duration (2160h, 90d)", clip(s.Duration))
		}
		life = d
	}
	if s.RenewBefore != "" {
		d, err := duration.Parse(s.RenewBefore)
		if err != nil || d <= 0 {
			return nil, bad("spec.renewBefore", "renewBefore %q is not a duration", clip(s.RenewBefore))
		}
		if d >= life {
			return nil, bad("spec.renewBefore", "renewBefore %s is not shorter than the duration %s: every renewal would be due at once", duration.Format(d), duration.Format(life))
		}
	}
	pk := &s.PrivateKey
	switch pk.Algorithm {
	case "", "RSA":
		pk.Algorithm = "RSA"
		switch pk.Size {
		case 0:
			pk.Size = 2048
		case 2048, 3072, 4096:
		default:
			return nil, bad("spec.privateKey.size", "an RSA key is 2048, 3072 or 4096 bits, not %d", pk.Size)
		}
	case "ECDSA":
		switch pk.Size {
		case 0:
			pk.Size = 256
		case 256, 384:
		default:
			return nil, bad("spec.privateKey.size", "an ECDSA key is 256 or 384 bits, not %d", pk.Size)
		}
	case "Ed25519":
		if pk.Size != 0 {
			return nil, bad("spec.privateKey.size", "an Ed25519 key has no size")
		}
	default:
		return nil, bad("spec.privateKey.algorithm", "privateKey.algorithm %q: RSA, ECDSA or Ed25519", clip(pk.Algorithm))
	}
	switch pk.Encoding {
	case "":
		pk.Encoding = "PKCS1"
	case "PKCS1", "PKCS8":
	default:
		return nil, bad("spec.privateKey.encoding", "privateKey.encoding %q: PKCS1 or PKCS8", clip(pk.Encoding))
	}
	switch pk.RotationPolicy {
	case "":
		pk.RotationPolicy = "Always"
	case "Always", "Never":
	default:
		return nil, bad("spec.privateKey.rotationPolicy", "privateKey.rotationPolicy %q: Always or Never", clip(pk.RotationPolicy))
	}
	for i, u := range s.Usages {
		if !usages[u] {
			return nil, bad("spec.usages", "usages[%d] %q is not a cert-manager key usage", i, clip(u))
		}
	}
	var warnings []Warning
	warn := func(path, msg string) { warnings = append(warnings, Warning{c.File, lineOf(root, path), msg}) }
	if s.IsCA {
		return nil, bad("spec.isCA", "isCA: meshpki issues leaf certificates only; intermediates come from 'meshpki ca'")
	}
	ig := reflect.ValueOf(s.Ignored)
	for i := range ig.NumField() {
		if !ig.Field(i).IsNil() {
			name, _, _ := strings.Cut(ig.Type().Field(i).Tag.Get("yaml"), ",")
			warn("spec."+name, "spec."+name+" has no effect outside Kubernetes; ignored")
		}
	}
	if s.IssuerRef.Kind == "ACMEIssuer" && (s.Meshpki == nil || s.Meshpki.ACME == "") {
		return nil, bad("spec.issuerRef", "an ACMEIssuer needs the ACME server's directory URL in spec.meshpki.acme")
	}
	if s.Meshpki == nil {
		s.Meshpki = &Local{}
	}
	if err := s.Meshpki.check(func(path, format string, args ...any) error { return bad("spec.meshpki."+path, format, args...) }, s.SecretName); err != nil {
		return nil, err
	}
	return warnings, nil
}

// check validates the local block and fills in its defaults.
func (l *Local) check(bad func(path, format string, args ...any) error, secretName string) error {
	if l.Dir == "" {
		l.Dir, l.DirDefaulted = filepath.Join(DefaultDir, secretName), true
	}
	if !filepath.IsAbs(l.Dir) {
		return bad("dir", "dir %q must be an absolute path", clip(l.Dir))
	}
	l.Dir = filepath.Clean(l.Dir)
	for _, f := range []struct {
		path string
		v    *string
		def  string
	}{{"cert", &l.Cert, "tls.crt"}, {"key", &l.Key, "tls.key"}, {"ca", &l.CA, "ca.crt"}, {"combined", &l.Combined, ""}, {"pkcs12", &l.PKCS12, ""}, {"jks", &l.JKS, ""}} {
		if *f.v == "" {
			*f.v = f.def
		}
		if *f.v != "" && (!filepath.IsLocal(*f.v) || strings.ContainsAny(*f.v, "/\\")) {
			return bad(f.path, "%s %q must be a file name inside dir, not a path", f.path, clip(*f.v))
		}
	}
	if (l.PKCS12 != "" || l.JKS != "") && l.PKCS12Password == "" {
		return bad("pkcs12PasswordFile", "a PKCS#12 or JKS keystore needs pkcs12PasswordFile (its password is never in the manifest)")
	}
	for _, m := range []struct {
		path string
		v    *string
		def  string
	}{{"mode", &l.Mode, "0644"}, {"keyMode", &l.KeyMode, "0600"}} {
		if *m.v == "" {
			*m.v = m.def
		}
		mode, err := strconv.ParseUint(*m.v, 8, 32)
		if err != nil || mode > 0o777 {
			return bad(m.path, "%s %q is not an octal file mode such as 0640", m.path, clip(*m.v))
		}
	}
	if km, _ := strconv.ParseUint(l.KeyMode, 8, 32); km&0o007 != 0 {
		return bad("keyMode", "keyMode %s lets everyone read the key: at most 0660", l.KeyMode)
	}
	if l.ACME != "" {
		if u, err := url.Parse(l.ACME); err != nil || u.Scheme != "https" || u.Host == "" {
			return bad("acme", "acme %q is not an https directory URL", clip(l.ACME))
		}
	}
	for i := range l.Hooks {
		h := &l.Hooks[i]
		set := 0
		for _, b := range []bool{h.Signal != nil, len(h.Command) > 0, h.HTTP != nil} {
			if b {
				set++
			}
		}
		at := fmt.Sprintf("hooks[%d]", i)
		if set != 1 {
			return bad("hooks", "%s: give exactly one of signal, command and http", at)
		}
		if h.Timeout == "" {
			h.Timeout = defaultHookWait.String()
		}
		if d, err := duration.Parse(h.Timeout); err != nil || d <= 0 {
			return bad("hooks", "%s: timeout %q is not a duration", at, clip(h.Timeout))
		}
		switch h.OnFailure {
		case "":
			h.OnFailure = "continue"
		case "continue", "stop":
		default:
			return bad("hooks", "%s: onFailure %q: continue or stop", at, clip(h.OnFailure))
		}
		switch {
		case h.Signal != nil:
			if !filepath.IsAbs(h.Signal.PIDFile) {
				return bad("hooks", "%s: signal.pidFile must be an absolute path", at)
			}
			switch h.Signal.Signal {
			case "":
				h.Signal.Signal = "HUP"
			case "HUP", "USR1", "USR2", "TERM":
			default:
				return bad("hooks", "%s: signal %q: HUP, USR1, USR2 or TERM", at, clip(h.Signal.Signal))
			}
		case h.HTTP != nil:
			if u, err := url.Parse(h.HTTP.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad("hooks", "%s: http.url %q is not an http(s) URL", at, clip(h.HTTP.URL))
			}
			switch h.HTTP.Method {
			case "":
				h.HTTP.Method = "POST"
			case "POST", "GET", "PUT":
			default:
				return bad("hooks", "%s: http.method %q: POST, GET or PUT", at, clip(h.HTTP.Method))
			}
		default:
			if !filepath.IsAbs(h.Command[0]) {
				return bad("hooks", "%s: command[0] %q must be an absolute path (hooks do not search PATH)", at, clip(h.Command[0]))
			}
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "document with no kind"
	}
	return clip(s)
}

// clip bounds what a manifest said before it is echoed in an error, at a
// rune boundary. (Not ca.Clip: this package stays free of the CA's
// dependencies, which an agent does not need.)
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Ref names c for logs and the audit log: the file and the name.
func (c *Certificate) Ref() string {
	return clip(c.File + ": " + c.ID())
}

// ID is what identifies c among the manifests a node holds: its name, in
// its namespace when it has one.
func (c *Certificate) ID() string {
	if c.Metadata.Namespace != "" {
		return c.Metadata.Namespace + "/" + c.Metadata.Name
	}
	return c.Metadata.Name
}

// RequestedDuration is spec.duration, or 0 when the manifest names none
// (the issuer's default then applies, not cert-manager's 90 days, which
// few provisioners allow).
func (c *Certificate) RequestedDuration() time.Duration {
	d, _ := duration.Parse(c.Spec.Duration)
	return d
}

// RenewBeforeDuration is spec.renewBefore, or 0 when unset.
func (c *Certificate) RenewBeforeDuration() time.Duration {
	d, _ := duration.Parse(c.Spec.RenewBefore)
	return d
}

package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/monitor"
)

// inspectDialTimeout bounds connecting and the TLS handshake of cert inspect.
const inspectDialTimeout = 10 * time.Second

// inspectReport is what cert inspect prints, as text or JSON.
type inspectReport struct {
	Source            string        `json:"source"`
	Subject           string        `json:"subject"`
	SANs              []string      `json:"sans"`
	Issuer            string        `json:"issuer"`
	Chain             []chainLink   `json:"chain"`
	NotBefore         time.Time     `json:"not_before"`
	NotAfter          time.Time     `json:"not_after"`
	Expires           string        `json:"expires"`
	Expired           bool          `json:"expired"`
	NotYetValid       bool          `json:"not_yet_valid"`
	Serial            string        `json:"serial"`
	FingerprintSHA256 string        `json:"fingerprint_sha256"`
	KeyType           string        `json:"key_type"`
	KeyUsage          []string      `json:"key_usage"`
	ExtKeyUsage       []string      `json:"ext_key_usage"`
	IsCA              bool          `json:"is_ca"`
	Verification      *verification `json:"verification,omitempty"`
}

// chainLink is one certificate of the chain as presented: who it names and
// who signed it.
type chainLink struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
}

// verification is the outcome of checking the chain against --root.
type verification struct {
	Root     string `json:"root"`
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
}

func newCertInspectCommand(s *streams) *cobra.Command {
	var (
		asJSON     bool
		rootFile   string
		serverName string
	)
	cmd := &cobra.Command{
		Use:   "inspect FILE|HOST:PORT|- [--json] [--root FILE]",
		Short: "Show a certificate from a PEM file or a TLS endpoint",
		Long: `Show the certificate in a PEM file (the first certificate is the leaf, any
others its chain; "-" reads stdin), or the one a TLS server at HOST:PORT
presents: subject, names, the issuer chain (subject → issuer, one per line),
validity and when it expires, serial, SHA-256 fingerprint, key type, key usage
and extended key usage.

No CA is contacted. For HOST:PORT the chain is read without checking it;
with --root the chain is then verified against that root (and, for HOST:PORT,
against the host name or --server-name) and the outcome printed. Private keys
in the file are ignored, never printed.

Exit code 0 when the certificate is within its validity (and, with --root,
verified), 3 when it is expired, not yet valid or fails verification.`,
		Example: `  meshpki cert inspect /etc/web/tls/web.crt
  meshpki cert inspect web.example.internal:443 --root root.crt
  meshpki cert inspect 10.0.0.7:8443 --server-name web.example.internal --json`,
		Args: positionalArgs("FILE|HOST:PORT"),
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the same fields as JSON")
	f.StringVar(&rootFile, "root", "", "PEM `FILE` of a root to verify the chain against")
	f.StringVar(&serverName, "server-name", "", "for HOST:PORT: the `NAME` to send (SNI) and verify (default HOST)")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var roots *x509.CertPool
		if rootFile != "" {
			data, err := os.ReadFile(rootFile)
			if err != nil {
				return fmt.Errorf("read root certificate: %w", err)
			}
			certs, err := client.ParseCertificatesPEM(data)
			if err != nil {
				return fmt.Errorf("root certificate %s: %w", rootFile, err)
			}
			roots = x509.NewCertPool()
			for _, cert := range certs {
				roots.AddCert(cert)
			}
		}
		chain, verifyName, err := loadInspectChain(c.Context(), s.in, args[0], serverName)
		if err != nil {
			return err
		}
		now := time.Now()
		report := newInspectReport(args[0], chain, now)
		if roots != nil {
			report.Verification = verifyChain(chain, roots, rootFile, verifyName, now)
		}
		if asJSON {
			err = writeJSON(s.out, report)
		} else {
			err = printInspectReport(s.out, report)
		}
		if err != nil {
			return err
		}
		return report.verdict()
	}
	return cmd
}

// loadInspectChain reads the chain from a file, stdin or a TLS endpoint. For
// an endpoint it also returns the name the certificate should be valid for.
func loadInspectChain(ctx context.Context, stdin io.Reader, source, serverName string) ([]*x509.Certificate, string, error) {
	if source == "-" {
		if stdin == nil {
			return nil, "", errors.New("no stdin to read")
		}
		data, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
		if err != nil {
			return nil, "", fmt.Errorf("read stdin: %w", err)
		}
		chain, err := parseInspectData(data)
		if err != nil {
			return nil, "", fmt.Errorf("stdin: %w", err)
		}
		return chain, "", nil
	}
	data, fileErr := os.ReadFile(source)
	if fileErr == nil {
		chain, err := parseInspectData(data)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", source, err)
		}
		return chain, "", nil
	}
	host, port, splitErr := net.SplitHostPort(source)
	if !errors.Is(fileErr, fs.ErrNotExist) || splitErr != nil || host == "" || !isPort(port) {
		if errors.Is(fileErr, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%s is neither a file nor HOST:PORT", source)
		}
		return nil, "", fmt.Errorf("read %s: %w", source, fileErr)
	}
	if serverName == "" {
		serverName = host
	}
	return dialChain(ctx, source, serverName)
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

// parseInspectData reads PEM certificates, or a single DER certificate,
// or a PKCS#12 trust store without a password.
func parseInspectData(data []byte) ([]*x509.Certificate, error) {
	return monitor.ParseCertificates(data, "")
}

// dialChain connects to addr and returns the chain the server presents,
// without verifying it.
func dialChain(ctx context.Context, addr, serverName string) ([]*x509.Certificate, string, error) {
	ctx, cancel := context.WithTimeout(ctx, inspectDialTimeout)
	defer cancel()
	sni := serverName
	if net.ParseIP(sni) != nil {
		sni = "" // IP addresses are not sent as SNI
	}
	dialer := &tls.Dialer{Config: &tls.Config{
		ServerName: sni,
		// Only to read the chain: it is verified separately against --root,
		// and nothing is sent over this connection.
		InsecureSkipVerify: true, //nolint:gosec
	}}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return nil, "", fmt.Errorf("%s presented no certificate", addr)
	}
	return state.PeerCertificates, serverName, nil
}

// newInspectReport describes chain, whose first certificate is the leaf.
func newInspectReport(source string, chain []*x509.Certificate, now time.Time) *inspectReport {
	leaf := chain[0]
	r := &inspectReport{
		Source:            source,
		Subject:           leaf.Subject.String(),
		SANs:              certNames(leaf),
		Issuer:            leaf.Issuer.String(),
		NotBefore:         leaf.NotBefore.UTC(),
		NotAfter:          leaf.NotAfter.UTC(),
		Expires:           expiresPhrase(leaf.NotAfter, now),
		Expired:           !now.Before(leaf.NotAfter),
		NotYetValid:       now.Before(leaf.NotBefore),
		Serial:            leaf.SerialNumber.Text(16),
		FingerprintSHA256: monitor.Fingerprint(leaf),
		KeyType:           monitor.KeyTypeName(leaf),
		KeyUsage:          keyUsageNames(leaf.KeyUsage),
		ExtKeyUsage:       extKeyUsageNames(leaf),
		IsCA:              leaf.IsCA,
	}
	for _, cert := range chain {
		r.Chain = append(r.Chain, chainLink{Subject: cert.Subject.String(), Issuer: cert.Issuer.String()})
	}
	return r
}

// verifyChain checks chain against roots; dnsName, if set, must be one of
// the leaf's names.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, rootFile, dnsName string, now time.Time) *verification {
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		DNSName:       dnsName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if dnsName != "" {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	v := &verification{Root: rootFile}
	if _, err := chain[0].Verify(opts); err != nil {
		v.Error = err.Error()
		var unknownAuthority x509.UnknownAuthorityError
		if len(chain) == 1 && errors.As(err, &unknownAuthority) {
			v.Error += " (only the leaf was given: is its intermediate missing?)"
		}
		return v
	}
	v.Verified = true
	return v
}

func printInspectReport(w io.Writer, r *inspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	orNone := func(values []string) string {
		if len(values) == 0 {
			return "none"
		}
		return strings.Join(values, ", ")
	}
	fmt.Fprintf(tw, "source\t%s\n", r.Source)
	fmt.Fprintf(tw, "subject\t%s\n", r.Subject)
	fmt.Fprintf(tw, "sans\t%s\n", orNone(r.SANs))
	for i, link := range r.Chain {
		label := ""
		if i == 0 {
			label = "chain"
		}
		fmt.Fprintf(tw, "%s\t%s → %s\n", label, link.Subject, link.Issuer)
	}
	fmt.Fprintf(tw, "not before\t%s\n", r.NotBefore.Format(time.RFC3339))
	validity := r.Expires
	if r.NotYetValid {
		validity = "not valid yet, " + validity
	}
	fmt.Fprintf(tw, "not after\t%s (%s)\n", r.NotAfter.Format(time.RFC3339), validity)
	fmt.Fprintf(tw, "serial\t%s\n", r.Serial)
	fmt.Fprintf(tw, "sha-256\t%s\n", r.FingerprintSHA256)
	fmt.Fprintf(tw, "key type\t%s\n", r.KeyType)
	fmt.Fprintf(tw, "key usage\t%s\n", orNone(r.KeyUsage))
	fmt.Fprintf(tw, "ext key usage\t%s\n", orNone(r.ExtKeyUsage))
	ca := "no"
	if r.IsCA {
		ca = "yes"
	}
	fmt.Fprintf(tw, "ca\t%s\n", ca)
	if v := r.Verification; v != nil {
		if v.Verified {
			fmt.Fprintf(tw, "verified\tyes, chains to %s\n", v.Root)
		} else {
			fmt.Fprintf(tw, "verified\tno: %s\n", strings.Join(strings.Fields(v.Error), " "))
		}
	}
	return tw.Flush()
}

// keyUsageNames lists key usage bits by their RFC 5280 names.
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{
		"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
	}
	var out []string
	for i, name := range names {
		if ku&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// extKeyUsageNames lists extended key usages by their RFC 5280 names, and
// unknown ones by OID.
func extKeyUsageNames(cert *x509.Certificate) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny:             "any",
		x509.ExtKeyUsageServerAuth:      "serverAuth",
		x509.ExtKeyUsageClientAuth:      "clientAuth",
		x509.ExtKeyUsageCodeSigning:     "codeSigning",
		x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping:    "timeStamping",
		x509.ExtKeyUsageOCSPSigning:     "OCSPSigning",
	}
	var out []string
	for _, eku := range cert.ExtKeyUsage {
		if name, ok := names[eku]; ok {
			out = append(out, name)
		} else {
			out = append(out, fmt.Sprintf("eku-%d", eku))
		}
	}
	for _, oid := range cert.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

// verdict is the exit status of an inspection: exitChecked when the
// certificate is outside its validity or failed verification.
func (r inspectReport) verdict() error {
	var why []string
	if r.Expired {
		why = append(why, "expired")
	}
	if r.NotYetValid {
		why = append(why, "not yet valid")
	}
	if r.Verification != nil && !r.Verification.Verified {
		why = append(why, "does not verify against "+r.Verification.Root)
	}
	if len(why) == 0 {
		return nil
	}
	return exitCodeError{code: exitChecked, err: fmt.Errorf("the certificate %s", strings.Join(why, " and "))}
}

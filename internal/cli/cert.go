package cli

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

func init() { register(newCertCommand) }

func newCertCommand(s *streams) *cobra.Command {
	return groupCommand("cert",
		"Issue, renew, revoke, list and inspect certificates",
		`Work with certificates: get one with a token (issue), renew it with itself
(renew), revoke it, list and show what the CA has issued (needs an admin), and
inspect certificate files or TLS endpoints (offline).`,
		`  meshpki cert issue web --san web.example.internal --token "$TOKEN" --ca-url https://ca.example.internal:8443 --root root.crt --out /etc/web/tls
  meshpki cert renew --cert /etc/web/tls/web.crt --key /etc/web/tls/web.key --ca-url https://ca.example.internal:8443 --root root.crt
  meshpki cert list --expiring-within 72h --data /var/lib/meshpki
  meshpki cert inspect example.internal:443`,
		newCertIssueCommand(s),
		newCertRenewCommand(s),
		newCertRevokeCommand(s),
		newCertListCommand(s),
		newCertShowCommand(s),
		newCertInspectCommand(s),
	)
}

func newCertIssueCommand(s *streams) *cobra.Command {
	var (
		sans    []string
		token   string
		outDir  string
		keyType string
		ttl     time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "issue NAME --san NAME... --token T --ca-url URL --root FILE --out DIR [--key-type ec-p256] [--ttl D] [--json]",
		Short: "Get a certificate with a one-time token; the key is made here and never sent",
		Long: `Get a certificate for NAME with a one-time token from 'meshpki token create'.
A new private key of --key-type is generated locally and never leaves this
machine: only a certificate request (common name NAME, the --san names) is
sent. Each --san must be granted by the token.

Writes DIR/NAME.crt (the certificate followed by its chain, PEM) and
DIR/NAME.key (the private key, unencrypted PKCS#8, mode 0600); DIR is created
with mode 0700 if missing. Both files are replaced atomically. --token - reads
the token from the first line of stdin, which keeps it out of the process list.
` + connectHelp,
		Example: `  meshpki cert issue web --san web.example.internal --san 10.0.0.7 --token "$TOKEN" \
      --ca-url https://ca.example.internal:8443 --root root.crt --out /etc/web/tls
  meshpki token create web --san web.example.internal --data /var/lib/meshpki | \
      meshpki cert issue web --san web.example.internal --token - --data /var/lib/meshpki --out ./tls --key-type ed25519`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialNone)
	f := cmd.Flags()
	f.StringSliceVar(&sans, "san", nil, "a `NAME` for the certificate (repeatable, comma-separated): DNS name, IP, URI or email")
	f.StringVar(&token, "token", "", "the one-time `TOKEN`, or \"-\" to read it from stdin")
	f.StringVar(&outDir, "out", "", "`DIR` to write NAME.crt and NAME.key to")
	f.StringVar(&keyType, "key-type", string(keys.ECP256), "`TYPE` of the new key: ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072 or rsa-4096")
	durationVar(f, &ttl, "ttl", 0, "certificate lifetime (default: the provisioner's)")
	f.BoolVar(&asJSON, "json", false, "print serial, names, validity and file paths as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if err := requireFlags(c, "san", "token", "out"); err != nil {
			return err
		}
		if err := checkFileName(name); err != nil {
			return err
		}
		if ttl < 0 {
			return usageError{errors.New("--ttl must be positive")}
		}
		kt, err := keys.ParseKeyType(keyType)
		if err != nil {
			return usageError{fmt.Errorf("--key-type: %w", err)}
		}
		names, err := policy.ParseNames(trimAll(sans))
		if err != nil {
			return usageError{fmt.Errorf("--san: %w", err)}
		}
		if names.Len() == 0 {
			return usageError{errors.New("--san needs at least one name")}
		}
		if token == "-" {
			if token, err = readTokenLine(s.in); err != nil {
				return err
			}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		defer cl.Close()

		key, err := kt.Generate()
		if err != nil {
			return err
		}
		csrPEM, err := createCSR(key, name, names)
		if err != nil {
			return err
		}
		resp, err := cl.Sign(c.Context(), client.SignRequest{CSR: csrPEM, Token: token, TTL: policy.Duration(ttl)})
		if err != nil {
			return err
		}
		chain, err := checkIssued(resp, key.Public())
		if err != nil {
			return err
		}
		keyPEM, err := keys.MarshalPrivateKeyPEM(key)
		if err != nil {
			return err
		}
		certFile := filepath.Join(outDir, name+".crt")
		keyFile := filepath.Join(outDir, name+".key")
		err = keys.WriteFile(keyFile, keyPEM, 0o600)
		clear(keyPEM)
		if err != nil {
			return err
		}
		if err := keys.WriteFile(certFile, encodeChain(chain), 0o600); err != nil {
			return err
		}
		return printIssued(s.out, asJSON, "issued "+name, chain[0], resp, certFile, keyFile)
	}
	return cmd
}

func newCertRenewCommand(s *streams) *cobra.Command {
	var (
		rotateKey bool
		ttl       time.Duration
		asJSON    bool
		daemon    renewDaemon
	)
	cmd := &cobra.Command{
		Use:   "renew --cert FILE --key FILE --ca-url URL --root FILE [--rotate-key] [--ttl D] [--json] [--daemon [--exec CMD]]",
		Short: "Renew a certificate, authenticating with the certificate itself",
		Long: `Renew a certificate before it expires, presenting it and its key as the TLS
client certificate; no token is needed. The new certificate has the same
subject and names; its lifetime is the old one's (within the provisioner's
current policy), or shorter with --ttl: a renewal never lives longer than the
certificate it renews.

With --rotate-key a new key of the same type is generated locally and only
its certificate request is sent. The --cert file (and, when rotated, the
--key file) is replaced atomically once the new certificate has arrived: the
key is written first, then the certificate.

With --daemon it keeps running and renews the certificate each time it is
due — when it expires within --renew-before, by default a third of its
lifetime (cert-manager's and the step CLI's two thirds), a little earlier at
random (up to a twentieth of the lifetime, at most 10 minutes) so that a
fleet does not renew at once — retrying with backoff (1s doubling to 5m)
until it succeeds or the certificate expires, which ends the daemon with
exit code 1. After each renewal it runs --exec with /bin/sh -c (for
example 'systemctl reload nginx'), limited to --exec-timeout; a failing
command is reported and the daemon goes on. SIGINT or SIGTERM stop it (exit
code 0).
` + connectHelp,
		Example: `  meshpki cert renew --cert /etc/web/tls/web.crt --key /etc/web/tls/web.key \
      --ca-url https://ca.example.internal:8443 --root root.crt --rotate-key
  meshpki cert renew --cert /etc/nginx/tls/web.crt --key /etc/nginx/tls/web.key \
      --ca-url https://ca.example.internal:8443 --root root.crt --daemon --exec 'systemctl reload nginx'`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialHolder)
	f := cmd.Flags()
	f.BoolVar(&rotateKey, "rotate-key", false, "generate a new key of the same type")
	durationVar(f, &ttl, "ttl", 0, "certificate lifetime, at most the old certificate's (the default)")
	f.BoolVar(&asJSON, "json", false, "print serial, names, validity and file paths as JSON")
	f.BoolVar(&daemon.on, "daemon", false, "keep running, renewing the certificate each time it is due")
	durationVar(f, &daemon.before, "renew-before", 0, "with --daemon, renew when the certificate expires within this (default a third of its lifetime)")
	f.StringVar(&daemon.exec, "exec", "", "with --daemon, a command run with /bin/sh -c after each renewal")
	durationVar(f, &daemon.execTimeout, "exec-timeout", time.Minute, "with --daemon, how long --exec may run")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if ttl < 0 || daemon.before < 0 || daemon.execTimeout <= 0 {
			return usageError{errors.New("--ttl, --renew-before and --exec-timeout must be positive")}
		}
		if !daemon.on && (daemon.exec != "" || daemon.before != 0) {
			return usageError{errors.New("--exec and --renew-before go with --daemon")}
		}
		renew := func(ctx context.Context) (*x509.Certificate, error) {
			return renewOnce(ctx, s, conn, rotateKey, ttl, asJSON)
		}
		if daemon.on {
			ctx, stop := signal.NotifyContext(contextOf(c), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.run(ctx, s, conn, renew)
		}
		_, err := renew(contextOf(c))
		return err
	}
	return cmd
}

// renewOnce renews the certificate conn names once, writes it (and a
// rotated key) and prints what it got; it returns the new leaf.
func renewOnce(ctx context.Context, s *streams, conn *connectFlags, rotateKey bool, ttl time.Duration, asJSON bool) (*x509.Certificate, error) {
	t, err := conn.resolve()
	if err != nil {
		return nil, err
	}
	if now := time.Now(); !now.Before(t.cred.Leaf.NotAfter) {
		return nil, &expiredError{fmt.Errorf("%s %s: an expired certificate cannot renew itself; get a new one with a token ('meshpki cert issue')",
			conn.certFile, expiresPhrase(t.cred.Leaf.NotAfter, now))}
	}
	cl, err := client.New(client.Config{URL: t.url, RootsPEM: t.rootsPEM, Certificate: t.cred})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	req := client.RenewRequest{TTL: policy.Duration(ttl)}
	wantKey := t.cred.Leaf.PublicKey
	var newKey crypto.Signer
	if rotateKey {
		kt, err := keys.TypeOf(t.cred.Leaf.PublicKey)
		if err != nil {
			return nil, err
		}
		if newKey, err = kt.Generate(); err != nil {
			return nil, err
		}
		if req.CSR, err = createCSR(newKey, t.cred.Leaf.Subject.CommonName, policy.Names{}); err != nil {
			return nil, err
		}
		wantKey = newKey.Public()
	}
	resp, err := cl.Renew(ctx, req)
	if err != nil {
		return nil, err
	}
	chain, err := checkIssued(resp, wantKey)
	if err != nil {
		return nil, err
	}
	if newKey != nil {
		keyPEM, err := keys.MarshalPrivateKeyPEM(newKey)
		if err != nil {
			return nil, err
		}
		err = keys.WriteFile(conn.keyFile, keyPEM, 0o600)
		clear(keyPEM)
		if err != nil {
			return nil, err
		}
	}
	if err := keys.WriteFile(conn.certFile, encodeChain(chain), fileMode(conn.certFile, 0o600)); err != nil {
		return nil, err
	}
	headline := "renewed " + chain[0].Subject.CommonName
	if newKey != nil {
		headline += " with a new key"
	}
	return chain[0], printIssued(s.out, asJSON, headline, chain[0], resp, conn.certFile, conn.keyFile)
}

// expiredError is a renewal that cannot happen: the certificate expired.
type expiredError struct{ error }

func (e *expiredError) Unwrap() error { return e.error }

func newCertRevokeCommand(s *streams) *cobra.Command {
	var (
		reason   string
		asJSON   bool
		renewals bool
		match    client.RevokeMatchingRequest
	)
	cmd := &cobra.Command{
		Use:   "revoke SERIAL | --name N | --spiffe-id ID | --issuer NAME/GEN | --node ID [--reason R] [--renewals]",
		Short: "Revoke a certificate, as an admin or as its holder",
		Long: `Revoke the certificate with serial number SERIAL (hexadecimal; colons and
leading zeros are ignored). An admin can revoke any certificate; a holder can
revoke their own by passing it and its key with --cert and --key.

--reason is an RFC 5280 reason: ` + strings.Join(client.RevocationReasons, ", ") + `
(default unspecified).

A renewal carries the same identity and may be renewed again with nothing but
itself, so revoking for keyCompromise also revokes every certificate renewed
from this one (directly or through other renewals); --renewals does so for any
reason.

Instead of one serial, an admin can revoke at a coarser grain, in one
transaction with an audit record each: --name every valid certificate that
carries the name (subject or SAN), --spiffe-id every SVID of a SPIFFE ID,
--issuer every certificate one intermediate generation signed (the root
revokes that generation too, and if it was the one signing, a new generation
is rotated in), --node an agent: it is evicted, its node SVID revoked, and its
workloads' SVIDs are no longer renewed.
` + adminConnectHelp,
		Example: `  meshpki cert revoke 5f0c3a9e --reason keyCompromise --data /var/lib/meshpki
  meshpki cert revoke 5f0c3a9e --reason superseded --cert web.crt --key web.key --ca-url https://ca.example.internal:8443 --root root.crt
  meshpki cert revoke --spiffe-id spiffe://example.internal/ns/batch --reason keyCompromise --data /var/lib/meshpki
  meshpki cert revoke --issuer default/1 --reason cACompromise --data /var/lib/meshpki
  meshpki cert revoke --node spiffe://example.internal/meshpki/node/join/3f2a --data /var/lib/meshpki`,
		Args: cobra.MaximumNArgs(1),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "RFC 5280 revocation `REASON`, e.g. keyCompromise or superseded")
	f.BoolVar(&asJSON, "json", false, "print the revoked certificate's record as JSON")
	f.BoolVar(&renewals, "renewals", false, "also revoke every certificate renewed from it (always done for keyCompromise)")
	f.StringVar(&match.Name, "name", "", "revoke every valid certificate with this `NAME` (subject or SAN) instead")
	f.StringVar(&match.SPIFFEID, "spiffe-id", "", "revoke every valid certificate with this SPIFFE `ID` instead")
	f.StringVar(&match.Issuer, "issuer", "", "revoke intermediate generation `NAME/GEN` (e.g. default/1) and every certificate it signed instead")
	var node string
	f.StringVar(&node, "node", "", "evict the agent with node SPIFFE `ID` and revoke its node SVID instead")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		grains := 0
		for _, v := range []string{match.Name, match.SPIFFEID, match.Issuer, node} {
			if v != "" {
				grains++
			}
		}
		if reason != "" {
			var err error
			if reason, err = checkReason(reason); err != nil {
				return err
			}
		}
		switch {
		case grains > 1 || grains == 1 && len(args) == 1:
			return usageError{errors.New("give one of SERIAL, --name, --spiffe-id, --issuer or --node")}
		case grains == 1 && renewals:
			return usageError{errors.New("--renewals goes with a SERIAL")}
		case node != "":
			if reason != "" {
				return usageError{errors.New("--node revokes for privilegeWithdrawn; leave out --reason")}
			}
			if _, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (struct{}, error) {
				return struct{}{}, cl.EvictNode(ctx, node)
			}); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(s.out, map[string]any{"evicted": node})
			}
			_, err := fmt.Fprintf(s.out, "evicted %s: its node SVID is revoked (privilegeWithdrawn) and its workloads' SVIDs are no longer renewed\n", node)
			return err
		case grains == 1:
			match.Reason = reason
			set, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.RevokedSet, error) {
				return cl.RevokeMatching(ctx, match)
			})
			if err != nil {
				return err
			}
			if set.Revoked == nil {
				set.Revoked = []store.Serial{}
			}
			if asJSON {
				return writeJSON(s.out, set)
			}
			if set.Intermediate != "" {
				fmt.Fprintf(s.out, "revoked intermediate %s (serial %s): on the root's CRL\n", match.Issuer, set.Intermediate)
			}
			for _, sn := range set.Revoked {
				fmt.Fprintf(s.out, "revoked %s\n", sn)
			}
			_, err = fmt.Fprintf(s.out, "%d certificates revoked\n", len(set.Revoked))
			if set.Replacement != "" && err == nil {
				_, err = fmt.Fprintf(s.out, "%s signs from now on\n", set.Replacement)
			}
			return err
		case len(args) == 0:
			return usageError{errors.New("missing SERIAL (or --name, --spiffe-id, --issuer, --node)")}
		}
		serial, err := normalizeSerial(args[0])
		if err != nil {
			return err
		}
		cert, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Certificate, error) {
			return cl.Revoke(ctx, client.RevokeRequest{Serial: string(serial), Reason: reason, Renewals: renewals})
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, cert)
		}
		shown := cert.RevocationReason
		if shown == "" {
			shown = "unspecified"
		}
		if _, err = fmt.Fprintf(s.out, "revoked %s (%s): %s, %s\n", cert.Serial, shown, cert.Subject, strings.Join(cert.Names, ", ")); err != nil {
			return err
		}
		for _, r := range cert.RevokedRenewals {
			fmt.Fprintf(s.out, "revoked %s (%s): a renewal of %s\n", r, shown, cert.Serial)
		}
		return nil
	}
	return cmd
}

func newCertListCommand(s *streams) *cobra.Command {
	var (
		name           string
		status         string
		expiringWithin time.Duration
		limit          int
		all            bool
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "list [--name N] [--status S] [--expiring-within D] [--limit N] [--all] [--json]",
		Short: "List the certificates the CA has issued",
		Long: `List issued certificates in the order the server returns them:
serial, subject, names, status and when each expires. --name matches the
subject or any name exactly; --status is valid, revoked or expired;
--expiring-within selects certificates that expire within that duration.

One page of --limit certificates (default 100, at most 1000) is shown; --all
follows the pages to the end.
` + adminConnectHelp,
		Example: `  meshpki cert list --data /var/lib/meshpki
  meshpki cert list --status valid --expiring-within 72h --all --data /var/lib/meshpki
  meshpki cert list --name web.example.internal --json --data /var/lib/meshpki`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "only certificates with this subject or `NAME`")
	f.StringVar(&status, "status", "", "only certificates with this `STATUS`: valid, revoked or expired")
	durationVar(f, &expiringWithin, "expiring-within", 0, "only certificates that expire within this duration, e.g. 72h")
	f.IntVar(&limit, "limit", 0, "`N` certificates per page (default 100, max 1000)")
	f.BoolVar(&all, "all", false, "follow the pages to the end")
	f.BoolVar(&asJSON, "json", false, `print {"certificates": [...], "next": "..."} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		switch status {
		case "", "valid", "revoked", "expired":
		default:
			return usageError{fmt.Errorf("--status %q: use valid, revoked or expired", status)}
		}
		if limit < 0 || limit > 1000 {
			return usageError{errors.New("--limit must be between 1 and 1000")}
		}
		if expiringWithin < 0 {
			return usageError{errors.New("--expiring-within must be positive")}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		defer cl.Close()
		q := client.CertificateQuery{Name: name, Status: status, ExpiringWithin: expiringWithin, Limit: limit}
		var result client.CertificatePage
		for {
			page, err := cl.ListCertificates(c.Context(), q)
			if err != nil {
				return err
			}
			result.Certificates = append(result.Certificates, page.Certificates...)
			result.Next = page.Next
			if !all || page.Next == "" || page.Next == q.After {
				break
			}
			q.After = page.Next
		}
		if asJSON {
			if result.Certificates == nil {
				result.Certificates = []client.Certificate{}
			}
			return writeJSON(s.out, result)
		}
		if len(result.Certificates) == 0 {
			fmt.Fprintln(s.err, "no certificates match")
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERIAL\tSUBJECT\tNAMES\tSTATUS\tEXPIRES")
		for _, cert := range result.Certificates {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cert.Serial, cert.Subject, shortNames(cert.Names), cert.Status, expiresPhrase(cert.NotAfter, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if result.Next != "" {
			fmt.Fprintf(s.err, "more certificates follow: pass --all to list them\n")
		}
		return nil
	}
	return cmd
}

func newCertShowCommand(s *streams) *cobra.Command {
	var asJSON, asPEM bool
	cmd := &cobra.Command{
		Use:   "show SERIAL [--json | --pem]",
		Short: "Show the CA's record of one certificate",
		Long: `Show the CA's record of the certificate with serial number SERIAL: subject,
names, provisioner, issuer, status, validity, revocation and what it renewed.
--pem prints the certificate itself instead, for 'meshpki cert inspect -' or
openssl.
` + adminConnectHelp,
		Example: `  meshpki cert show 5f0c3a9e --data /var/lib/meshpki
  meshpki cert show 5f0c3a9e --pem --data /var/lib/meshpki > web.crt`,
		Args: positionalArgs("SERIAL"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the record, with the PEM certificate, as JSON")
	f.BoolVar(&asPEM, "pem", false, "print only the certificate, PEM")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if asJSON && asPEM {
			return usageError{errors.New("--json and --pem exclude each other")}
		}
		serial, err := normalizeSerial(args[0])
		if err != nil {
			return err
		}
		cert, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Certificate, error) {
			return cl.GetCertificate(ctx, serial)
		})
		if err != nil {
			return err
		}
		switch {
		case asJSON:
			return writeJSON(s.out, cert)
		case asPEM:
			_, err := io.WriteString(s.out, strings.TrimRight(cert.PEM, "\n")+"\n")
			return err
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "serial\t%s\n", cert.Serial)
		fmt.Fprintf(tw, "subject\t%s\n", cert.Subject)
		fmt.Fprintf(tw, "names\t%s\n", strings.Join(cert.Names, ", "))
		fmt.Fprintf(tw, "provisioner\t%s\n", cert.Provisioner)
		fmt.Fprintf(tw, "issuer\t%s\n", cert.Issuer)
		fmt.Fprintf(tw, "status\t%s\n", cert.Status)
		fmt.Fprintf(tw, "not before\t%s\n", cert.NotBefore.UTC().Format(time.RFC3339))
		fmt.Fprintf(tw, "not after\t%s (%s)\n", cert.NotAfter.UTC().Format(time.RFC3339), expiresPhrase(cert.NotAfter, now))
		if cert.RevokedAt != nil {
			reason := cert.RevocationReason
			if reason == "" {
				reason = "unspecified"
			}
			fmt.Fprintf(tw, "revoked\t%s, %s ago (%s)\n", cert.RevokedAt.UTC().Format(time.RFC3339), humanDuration(now.Sub(*cert.RevokedAt)), reason)
		}
		if cert.RenewedFrom != "" {
			fmt.Fprintf(tw, "renewed from\t%s\n", cert.RenewedFrom)
		}
		return tw.Flush()
	}
	return cmd
}

// createCSR returns a PEM certificate request for key with common name cn
// and the given names.
func createCSR(key crypto.Signer, cn string, names policy.Names) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: cn},
		DNSNames:       names.DNS,
		IPAddresses:    names.IPs,
		URIs:           names.URIs,
		EmailAddresses: names.Emails,
	}, key)
	if err != nil {
		return "", fmt.Errorf("create certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// checkIssued parses the chain the CA returned and checks that its leaf is
// for want, the key this side holds.
func checkIssued(resp *client.SignResponse, want crypto.PublicKey) ([]*x509.Certificate, error) {
	chain, err := client.ParseCertificatesPEM([]byte(resp.Certificate))
	if err != nil {
		return nil, fmt.Errorf("the CA's answer holds no usable certificate: %w", err)
	}
	got, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !got.Equal(want) {
		return nil, errors.New("the CA returned a certificate for a different key; nothing was written")
	}
	return chain, nil
}

// encodeChain returns the certificates as concatenated PEM blocks.
func encodeChain(chain []*x509.Certificate) []byte {
	var out []byte
	for _, cert := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return out
}

// printIssued prints what issue and renew did, under a headline.
// issuedOutput is what cert issue and cert renew print with --json.
type issuedOutput struct {
	Serial          store.Serial `json:"serial"`
	Subject         string       `json:"subject"`
	Names           []string     `json:"names"`
	NotBefore       time.Time    `json:"not_before"`
	NotAfter        time.Time    `json:"not_after"`
	CertificateFile string       `json:"certificate_file"`
	KeyFile         string       `json:"key_file"`
}

func printIssued(w io.Writer, asJSON bool, headline string, leaf *x509.Certificate, resp *client.SignResponse, certFile, keyFile string) error {
	names := certNames(leaf)
	if asJSON {
		return writeJSON(w, issuedOutput{Serial: resp.Serial, Subject: leaf.Subject.CommonName, Names: names,
			NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), CertificateFile: certFile, KeyFile: keyFile})
	}
	fmt.Fprintln(w, headline)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "serial\t%s\n", resp.Serial)
	fmt.Fprintf(tw, "names\t%s\n", strings.Join(names, ", "))
	fmt.Fprintf(tw, "valid\t%s to %s (%s)\n", leaf.NotBefore.UTC().Format(time.RFC3339),
		leaf.NotAfter.UTC().Format(time.RFC3339), expiresPhrase(leaf.NotAfter, time.Now()))
	fmt.Fprintf(tw, "certificate\t%s\n", certFile)
	fmt.Fprintf(tw, "key\t%s\n", keyFile)
	return tw.Flush()
}

// certNames lists a certificate's subject alternative names as text.
func certNames(cert *x509.Certificate) []string {
	return policy.Names{DNS: cert.DNSNames, IPs: cert.IPAddresses, URIs: cert.URIs, Emails: cert.EmailAddresses}.Strings()
}

// shortNames joins up to two names and counts the rest.
func shortNames(names []string) string {
	const shown = 2
	if len(names) <= shown {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s +%d", strings.Join(names[:shown], ","), len(names)-shown)
}

// normalizeSerial is ca.ParseSerial with its error as a usage error.
func normalizeSerial(s string) (store.Serial, error) {
	serial, err := ca.ParseSerial(s)
	if err != nil {
		return "", usageError{err}
	}
	return serial, nil
}

// checkReason returns the API's spelling of a revocation reason, matched
// without regard to case.
func checkReason(reason string) (string, error) {
	for _, r := range client.RevocationReasons {
		if strings.EqualFold(r, reason) {
			return r, nil
		}
	}
	return "", usageError{fmt.Errorf("--reason %q: use one of %s", reason, strings.Join(client.RevocationReasons, ", "))}
}

// checkFileName rejects names that cannot be used as NAME.crt in --out.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return usageError{fmt.Errorf("NAME %q cannot be a file name in --out", name)}
	}
	return nil
}

// readTokenLine reads a token from the first line of r.
func readTokenLine(r io.Reader) (string, error) {
	if r == nil {
		return "", usageError{errors.New("--token -: no stdin")}
	}
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read token from stdin: %w", err)
	}
	token := strings.TrimSpace(line)
	if token == "" {
		return "", usageError{errors.New("--token -: stdin is empty")}
	}
	return token, nil
}

// fileMode returns path's permission bits, or def if it cannot be read.
func fileMode(path string, def os.FileMode) os.FileMode {
	if info, err := os.Stat(path); err == nil {
		return info.Mode().Perm()
	}
	return def
}

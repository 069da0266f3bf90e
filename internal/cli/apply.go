package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/agent"
	"github.com/meshpki/meshpki/internal/declared"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/manifest"
	"github.com/meshpki/meshpki/internal/nodeapi"
)

func init() { register(newApplyCommand) }

func newApplyCommand(s *streams) *cobra.Command {
	var (
		cfg    agent.Config
		files  []string
		force  bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE --server URL --trust-bundle FILE --data DIR [--cert-root DIR] [--force]",
		Short: "Issue and write the certificates cert-manager Certificate manifests declare, once",
		Long: `Apply cert-manager.io/v1 Certificate manifests once, as 'meshpki agent
--manifests' does continually (docs/MANIFESTS.md): each certificate whose
files are missing, were issued for another version of its manifest, or are
due for renewal is issued — through the node provisioners that name this
node, with the node SVID the agent keeps in --data, or from the ACME server
of an ACMEIssuer — written atomically under a --cert-root, and followed by
its hooks. Certificates that are up to date are left alone unless --force.

Exit code 0 when every certificate is ready, 1 when a manifest cannot be read
(the message names the file and line) or a certificate could not be issued
or written. A failing hook is reported but does not fail the command: the
certificate is written by then.`,
		Example: `  meshpki apply -f /etc/meshpki/manifests/web.yaml --server https://ca.example.internal:8443 \
      --trust-bundle /etc/meshpki/root.crt --data /var/lib/meshpki-agent --cert-root /etc/nginx/tls
  meshpki apply -f web.yaml ... --force --json | jq '.[] | {name, serial, ready}'`,
		Args: positionalArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError{errors.New("-f FILE is required (see 'meshpki apply --help')")}
			}
			var certs []manifest.Certificate
			for _, path := range files {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				cs, warnings, err := manifest.Parse(path, f)
				f.Close()
				if err != nil {
					return err
				}
				for _, w := range warnings {
					fmt.Fprintf(s.err, "meshpki: warning: %s\n", w)
				}
				certs = append(certs, cs...)
			}
			if len(certs) == 0 {
				return fmt.Errorf("no Certificate in %v", files)
			}
			roots := cfg.CertRoots
			if len(roots) == 0 {
				roots = []string{manifest.DefaultDir}
			}
			dcfg := declared.Config{AllowedRoots: roots, Logger: slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			if declared.NeedsNode(certs) {
				client, err := agent.DialNode(cfg)
				if err != nil {
					return err
				}
				defer client.Close()
				dcfg.Node = declared.NodeIssuer{Client: func() *nodeapi.Client { return client }}
			}
			if cfg.DataDir != "" {
				if pass, _, err := keys.ResolvePassphrase(cfg.DataDir, cfg.PasswordFile, false); err == nil {
					dcfg.ACME = declared.NewACMEIssuers(agent.DeclaredACME(cfg, pass))
				}
			}
			results := declared.New(dcfg).Apply(contextOf(c), certs, force)
			failed := 0
			for _, r := range results {
				if !r.Ready {
					failed++
				}
			}
			if asJSON {
				if err := writeJSON(s.out, results); err != nil {
					return err
				}
			} else if err := printApplied(s, results); err != nil {
				return err
			}
			if failed > 0 {
				return exitCodeError{code: exitError, err: fmt.Errorf("%d of %d certificates are not ready", failed, len(results))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&files, "filename", "f", nil, "manifest `FILE` (several Certificates per file; repeatable)")
	f.StringVar(&cfg.ServerURL, "server", "", "`URL` of the meshpki server (https://HOST:PORT), for Issuer and ClusterIssuer manifests")
	f.StringVar(&cfg.TrustBundle, "trust-bundle", "", "PEM `FILE` with the root to trust for the server")
	f.StringVar(&cfg.DataDir, "data", "", "the agent's data `DIR`, holding the node SVID")
	f.StringVar(&cfg.PasswordFile, "password-file", "", "file with the passphrase of the agent's keys (default: MESHPKI_PASSWORD, else DIR/secrets)")
	f.StringSliceVar(&cfg.CertRoots, "cert-root", nil, "`DIR` certificates may be written in, repeatable (default /var/lib/meshpki/certs)")
	f.StringVar(&cfg.ACMEHTTP01, "acme-http01-address", "", "`HOST:PORT` where ACMEIssuer manifests answer http-01 challenges (default :80)")
	f.BoolVar(&force, "force", false, "issue every certificate again, even those up to date")
	f.BoolVar(&asJSON, "json", false, "print each certificate's status as JSON")
	return cmd
}

func printApplied(s *streams, results []declared.CertificateStatus) error {
	now := time.Now()
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	for _, r := range results {
		var what string
		switch {
		case !r.Ready && r.LastFailure != "":
			what = "failed: " + oneLine(r.LastFailure, 200)
		case !r.Ready:
			what = "not ready"
		case r.Revision > 0:
			what = "issued " + r.Serial + ", " + expiresPhrase(r.NotAfter, now)
		default:
			what = "up to date, " + expiresPhrase(r.NotAfter, now)
		}
		for _, h := range r.Hooks {
			switch {
			case h.Skipped:
				what += "; hook " + h.Name + " skipped"
			case !h.OK:
				what += "; hook " + h.Name + " failed: " + oneLine(h.Error, 100)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Dir, what)
	}
	return tw.Flush()
}

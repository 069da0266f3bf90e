package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/agent"
	"github.com/meshpki/meshpki/internal/declared"
)

func init() { register(newAgentCommand) }

func newAgentCommand(s *streams) *cobra.Command {
	var (
		cfg           agent.Config
		logLevel      string
		joinTokenFile string
		logFormat     string
		configFile    string
		printCfg      bool
	)
	cmd := &cobra.Command{
		Use:   "agent --server URL --trust-bundle FILE --socket PATH --data DIR [--join-token-file F | --x509pop-cert F --x509pop-key K]",
		Short: "Run the node agent: SPIFFE Workload API for the workloads on this node",
		Long: `Run the node agent. On first start it attests the node with a one-time join
token (from 'meshpki token create --join --spiffe-id …'), or with x509pop (a
certificate from a CA the server trusts for nodes, --x509pop-ca, and its key),
and keeps the node SVID,
encrypted, in --data, so a restart needs no new token while it is valid. It then
follows the registration entries that apply to this node, has their X.509-SVIDs
minted and rotated at half-life, and serves them on the SPIFFE Workload API at
--socket, attesting each caller by its Unix peer credentials. While the server
is unreachable it keeps serving what it holds and reconnects with backoff.

The join token is read from --join-token-file, else from the environment
variable MESHPKI_JOIN_TOKEN; --join-token also works but puts the token where
every local user can read it (ps, /proc/PID/cmdline).

'meshpki agent status --data DIR' shows the outage budget: how long the
workloads stay covered if the server vanished now.

With --manifests DIR the agent also keeps the certificates that the
cert-manager Certificate manifests in DIR declare (several per file, *.yaml
or *.yml): issued through the node provisioners that name this node (or any
ACME server for an ACMEIssuer), written atomically under a --cert-root,
renewed at renewBefore or two thirds of their lifetime, and followed by their
hooks. DIR is read again every 2 seconds: a change applies without a
restart. 'meshpki agent status' lists them (docs/MANIFESTS.md).

Settings can live in a YAML file, --config FILE, whose keys are these flags'
names without the dashes; flags given win, unknown keys are errors, and
--print-config prints the effective settings with their sources
(docs/CONFIG.md).`,
		Example: `  meshpki agent --server https://ca.example.internal:8443 --trust-bundle root.crt \
      --join-token-file /etc/meshpki/join-token --socket /run/meshpki/agent.sock --data /var/lib/meshpki-agent
  MESHPKI_JOIN_TOKEN="$TOKEN" meshpki agent --server https://ca.example.internal:8443 --trust-bundle root.crt \
      --socket /run/meshpki/agent.sock --data /var/lib/meshpki-agent
  meshpki agent --server https://ca.example.internal:8443 --trust-bundle root.crt --socket /run/meshpki/agent.sock \
      --data /var/lib/meshpki-agent --manifests /etc/meshpki/manifests --cert-root /etc/nginx/tls`,
		Args: positionalArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			if c.Flags().NFlag() == 0 {
				return c.Help() // bare 'meshpki agent': say what it takes
			}
			sources, err := applyConfigFile(c, configFile)
			if err != nil {
				return usageError{err}
			}
			if printCfg {
				return printConfig(s.out, c, sources, map[string]string{})
			}
			for flag, v := range map[string]string{"--server": cfg.ServerURL, "--trust-bundle": cfg.TrustBundle, "--socket": cfg.Socket, "--data": cfg.DataDir} {
				if v == "" {
					return usageError{fmt.Errorf("%s is required (see 'meshpki agent --help')", flag)}
				}
			}
			token, err := resolveJoinToken(cfg.JoinToken, joinTokenFile, c.Flags().Changed("join-token"))
			if err != nil {
				return err
			}
			cfg.JoinToken = token
			if cfg.Logger, err = newLogger(s.err, logLevel, logFormat); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(contextOf(c), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Ready = func() { fmt.Fprintf(s.out, "meshpki agent: Workload API on %s\n", cfg.Socket) }
			return agent.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML `FILE` of settings: each key a flag name without dashes; flags given win")
	f.BoolVar(&printCfg, "print-config", false, "print the effective configuration, each value with its source, and exit")
	f.StringVar(&cfg.ServerURL, "server", "", "`URL` of the meshpki server (https://HOST:PORT)")
	f.StringVar(&cfg.TrustBundle, "trust-bundle", "", "PEM `FILE` with the root to trust for the server (DIR/ca/root.crt on the CA host)")
	f.StringVar(&joinTokenFile, "join-token-file", "", "`FILE` holding the one-time join token, needed when --data holds no valid node SVID (else MESHPKI_JOIN_TOKEN); may be removed once the node attested")
	f.StringVar(&cfg.JoinToken, "join-token", "", "one-time join `TOKEN` on the command line (visible in ps: prefer --join-token-file or MESHPKI_JOIN_TOKEN)")
	f.StringVar(&cfg.X509PoPCert, "x509pop-cert", "", "PEM `FILE` of a node certificate (and intermediates) for x509pop attestation")
	f.StringVar(&cfg.X509PoPKey, "x509pop-key", "", "PEM `FILE` of the x509pop certificate's key")
	f.StringVar(&cfg.Socket, "socket", "", "`PATH` of the Workload API Unix socket")
	f.StringVar(&cfg.DataDir, "data", "", "agent data `DIR` (node SVID, status)")
	f.StringVar(&cfg.PasswordFile, "password-file", "", "file with the passphrase that encrypts the node key (default: MESHPKI_PASSWORD, else generated in DIR/secrets)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "`ADDR` to serve Prometheus metrics on (off when empty)")
	f.StringVar(&cfg.Manifests, "manifests", "", "`DIR` of cert-manager Certificate manifests to keep issued, written and renewed (docs/MANIFESTS.md)")
	f.StringSliceVar(&cfg.CertRoots, "cert-root", nil, "`DIR` declared certificates may be written in, repeatable (default /var/lib/meshpki/certs)")
	f.StringVar(&cfg.ACMEHTTP01, "acme-http01-address", "", "`HOST:PORT` where ACMEIssuer manifests answer http-01 challenges (default :80)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text, or json (one object per line)")
	cmd.AddCommand(newAgentStatusCommand(s), newAgentEvictCommand(s), newAgentListCommand(s))
	return cmd
}

// JoinTokenEnv is the environment variable the agent reads a join token from.
const JoinTokenEnv = "MESHPKI_JOIN_TOKEN"

// resolveJoinToken picks the join token from --join-token, --join-token-file
// or MESHPKI_JOIN_TOKEN; giving it two ways on the command line is a usage
// error.
func resolveJoinToken(flagValue, file string, flagSet bool) (string, error) {
	if flagSet && file != "" {
		return "", usageError{errors.New("give --join-token or --join-token-file, not both")}
	}
	if flagSet {
		return flagValue, nil
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed once the node attested (the token is spent): the
			// agent needs one only when it holds no valid node SVID, and
			// says so then.
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("join token file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" || strings.ContainsAny(token, " \t\r\n") {
			return "", fmt.Errorf("join token file %s must hold one token on one line", file)
		}
		return token, nil
	}
	return strings.TrimSpace(os.Getenv(JoinTokenEnv)), nil
}

func newAgentStatusCommand(s *streams) *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status --data DIR [--json]",
		Short: "Show the agent's node, sync state, outage budget and declared certificates",
		Long: `Show what the agent running with --data DIR last recorded: its node SPIFFE ID,
whether its sync stream to the server is up, how many entries and SVIDs it
holds, and its outage budget — how long every workload stays covered if the
server vanished now (until the first SVID it holds expires).

With --manifests, it also lists each declared certificate: ready or not,
when it expires, its last and next renewal, and how its hooks last went,
then the manifests that could not be read (file and line). --json gives
them under "declared", each with Kubernetes-style conditions (Ready,
Issuing, HooksSucceeded) as cert-manager reports a Certificate.`,
		Example: `  meshpki agent status --data /var/lib/meshpki-agent
  meshpki agent status --data /var/lib/meshpki-agent --json | jq .outage_budget_ns
  meshpki agent status --data /var/lib/meshpki-agent --json | jq '.declared.certificates[] | select(.ready | not)'`,
		Args: positionalArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--data is required")}
			}
			st, err := agent.ReadStatus(dir)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no agent status in %s: is an agent running with --data %s?", dir, dir)
			}
			if err != nil {
				return fmt.Errorf("agent status: %w", err)
			}
			report, rerr := declared.ReadReport(filepath.Join(dir, declared.StatusFile))
			var decl *declared.Report
			if rerr == nil {
				decl = &report
			} else if !errors.Is(rerr, fs.ErrNotExist) {
				return fmt.Errorf("agent status: %w", rerr)
			}
			if asJSON {
				return writeJSON(s.out, struct {
					agent.Status
					Declared *declared.Report `json:"declared,omitempty"`
				}{st, decl})
			}
			now := time.Now()
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "node\t%s\n", st.NodeID)
			fmt.Fprintf(tw, "server\t%s\n", st.Server)
			conn := "disconnected"
			if st.Connected {
				conn = "connected"
			}
			if !st.LastSync.IsZero() {
				conn += ", last sync " + agoPhrase(now.Sub(st.LastSync))
			}
			if st.SyncStreams > 0 {
				conn += fmt.Sprintf(" (sync streams opened: %d)", st.SyncStreams)
			}
			fmt.Fprintf(tw, "sync\t%s\n", conn)
			fmt.Fprintf(tw, "entries\t%d\n", st.Entries)
			fmt.Fprintf(tw, "svids\t%d\n", st.SVIDs)
			if !st.NodeSVIDExpiry.IsZero() {
				fmt.Fprintf(tw, "node svid\t%s\n", expiresPhrase(st.NodeSVIDExpiry, now))
			}
			budget := "no SVIDs held"
			if !st.OutageBudgetAt.IsZero() {
				budget = humanDuration(max(st.OutageBudgetAt.Sub(now), 0)) + " (until " + st.OutageBudgetAt.UTC().Format(time.RFC3339) + ")"
			}
			fmt.Fprintf(tw, "outage budget\t%s\n", budget)
			fmt.Fprintf(tw, "recorded\t%s\n", agoPhrase(now.Sub(st.UpdatedAt)))
			if err := tw.Flush(); err != nil || decl == nil {
				return err
			}
			return printDeclared(s.out, *decl, now)
		},
	}
	cmd.Flags().StringVar(&dir, "data", "", "the agent's data `DIR`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

// printDeclared lists declared certificates, one per line, then the
// manifests that could not be read.
func printDeclared(w io.Writer, r declared.Report, now time.Time) error {
	fmt.Fprintf(w, "\ndeclared certificates (%s):\n", r.Dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREADY\tEXPIRES\tLAST RENEWAL\tNEXT RENEWAL\tHOOKS\tSTATUS")
	for _, c := range r.Certificates {
		expires, last, next := "-", "-", "-"
		if !c.NotAfter.IsZero() {
			expires = expiresPhrase(c.NotAfter, now)
		}
		if !c.LastRenewal.IsZero() {
			last = agoPhrase(now.Sub(c.LastRenewal))
		}
		if !c.RenewalTime.IsZero() {
			next = "in " + humanDuration(max(c.RenewalTime.Sub(now), 0))
		}
		hooks := "-"
		if len(c.Hooks) > 0 {
			ok := 0
			for _, h := range c.Hooks {
				if h.OK {
					ok++
				}
			}
			hooks = fmt.Sprintf("%d/%d ok", ok, len(c.Hooks))
		}
		msg := ""
		if cond, found := c.Condition(declared.ConditionReady); found && !c.Ready {
			msg = cond.Message
		}
		if c.LastFailure != "" && c.FailedIssuanceAttempts > 0 {
			msg = "failing: " + c.LastFailure
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, yesNo(c.Ready), expires, last, next, hooks, oneLine(msg, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "manifest error: %s:%d: %s\n", e.File, e.Line, e.Message)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "manifest warning: %s\n", warn)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine keeps the first line of s, at most n runes.
func oneLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

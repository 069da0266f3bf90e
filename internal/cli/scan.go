package cli

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/monitor"
)

func init() { register(newScanCommand) }

func newScanCommand(s *streams) *cobra.Command {
	var (
		sni, startTLS, warn, failOn, pkcs12Password, dataDir string
		roots, labelArgs                                     []string
		concurrency                                          int
		timeout                                              = durationValue(monitor.DefaultTimeout)
		asJSON, allowLarge, noLint, noRevocation             bool
		reportURL, certFile, keyFile, passwordFile           string
	)
	cmd := &cobra.Command{
		Use:   "scan TARGET... [--json] [--fail-on SEVERITY]",
		Short: "Check the certificates of TLS endpoints and files: expiry, trust, names, weak keys",
		Long: `Scan TLS endpoints and certificate files and report what is wrong with each
certificate: expired, not yet valid, expiring soon, renewal overdue (for
short-lived certificates), an untrusted or incomplete chain, a name that does
not match, a weak key or signature, self-signed, zlint errors.

A TARGET is
  HOST:PORT                 a TLS server (--sni NAME to send another name)
  https://HOST[:PORT]/…     the same, port 443 by default
  10.0.0.0/28:443,8443      every address of a CIDR on each port (at most 4096
                            addresses without --allow-large); addresses where
                            nothing answers are left out
  FILE                      PEM (bundles too), DER or PKCS#12 (.p12/.pfx)
  DIR                       every file below it; files without certificates
                            are left out

Ports 25 and 587 speak SMTP STARTTLS first, 143 IMAP and 5432 PostgreSQL
(--starttls smtp|imap|postgres|none to choose). Chains are verified against
--root files, the CA's root with --data DIR, or else the system's roots.

Findings carry a check id and a severity (info, warning, error, critical);
docs/SCAN.md lists them. --json prints one JSON object per target and line.

--report URL sends what was seen to the server's inventory, which checks
each chain again against its own roots; it needs an admin credential (--data
on the CA host, else --cert and --key, with the CA's root from --data or
MESHPKI_ROOT). 'meshpki scan schedule' has the server scan on its own.

Exit code 0 when nothing at or above --fail-on was found, 3 when something
was, 1 when a target could not be scanned (an address of a CIDR or a file of
a directory that had nothing to scan is not an error) or the report failed.`,
		Example: `  meshpki scan web.example.internal:443 https://api.example.com
  meshpki scan 10.0.0.0/24:443,8443 --root root.crt --json > scan.jsonl
  meshpki scan /etc/ssl/private /etc/nginx/tls --warn 30d,7d --fail-on error
  meshpki scan mail.example.internal:587 db.example.internal:5432
  meshpki scan keystore.p12 --pkcs12-password file:/etc/app/p12.pass
  meshpki scan /etc/nginx/tls --report https://ca.example.internal:8443 --cert admin.crt --key admin.key`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("missing TARGET (see '%s --help')", c.CommandPath())}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sni, "sni", "", "server `NAME` to send and check, for every endpoint (default: the host of each target)")
	f.StringVar(&startTLS, "starttls", "", "`PROTO` spoken before TLS on every endpoint: smtp, imap, postgres or none (default: by port)")
	f.IntVar(&concurrency, "concurrency", monitor.DefaultConcurrency, "targets scanned at once")
	f.Var(&timeout, "timeout", "`DURATION` each endpoint has to connect, STARTTLS and complete the handshake")
	f.StringVar(&warn, "warn", "30d,14d,7d,1d", "expires_soon `THRESHOLDS`: the smallest is critical, the next error, the others warnings")
	f.StringArrayVar(&roots, "root", nil, "PEM `FILE` of trusted roots (repeatable; default: the system's)")
	f.StringVar(&dataDir, "data", "", "the CA's data `DIR`: trust its root (DIR/ca/root.crt)")
	f.StringVar(&failOn, "fail-on", "warning", "exit 3 when a finding of this `SEVERITY` or worse is found: info, warning, error, critical")
	f.StringVar(&pkcs12Password, "pkcs12-password", "", "where the PKCS#12 password is: file:`PATH` or env:VAR (never the password itself)")
	f.BoolVar(&allowLarge, "allow-large", false, "allow a CIDR of more than 4096 addresses (up to 1048576)")
	f.BoolVar(&noLint, "no-lint", false, "skip the zlint check")
	f.BoolVar(&noRevocation, "no-revocation", false, "do not ask leaves' OCSP responders or CRLs whether they were revoked")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per target and line")
	f.StringVar(&reportURL, "report", "", "send the results to the inventory of the server at `URL`")
	f.StringArrayVar(&labelArgs, "label", nil, "`NAME=VALUE` label for what --report sends (repeatable), e.g. team=payments")
	f.StringVar(&certFile, "cert", "", "admin certificate `FILE` for --report (default with --data: DIR/secrets/admin.crt)")
	f.StringVar(&keyFile, "key", "", "private key `FILE` of --cert")
	f.StringVar(&passwordFile, "password-file", "", "`FILE` holding the passphrase of an encrypted --key")
	cmd.AddCommand(newScanScheduleCommand(s))
	cmd.RunE = func(c *cobra.Command, args []string) error {
		threshold, err := monitor.ParseSeverity(failOn)
		if err != nil {
			return usageError{fmt.Errorf("--fail-on: %w", err)}
		}
		warnAt, err := monitor.ParseThresholds(warn)
		if err != nil {
			return usageError{fmt.Errorf("--warn: %w", err)}
		}
		if concurrency < 1 || concurrency > 4096 {
			return usageError{errors.New("--concurrency must be between 1 and 4096")}
		}
		if timeout <= 0 {
			return usageError{errors.New("--timeout must be positive")}
		}
		password, err := secretFrom(pkcs12Password)
		if err != nil {
			return usageError{fmt.Errorf("--pkcs12-password: %w", err)}
		}
		if dataDir != "" {
			roots = append(roots, filepath.Join(dataDir, "ca", "root.crt"))
		}
		pool, err := loadRoots(roots)
		if err != nil {
			return err
		}
		targets, err := monitor.ParseTargets(args, monitor.TargetOptions{SNI: sni, StartTLS: startTLS, AllowLarge: allowLarge})
		if err != nil {
			return usageError{err}
		}
		scanner := &monitor.Scanner{
			Policy:      &monitor.Policy{Warn: warnAt, Roots: pool, Lint: !noLint, Revocation: revocationChecker(noRevocation, time.Duration(timeout))},
			Concurrency: concurrency, Timeout: time.Duration(timeout), PKCS12Password: password,
		}
		bar := newProgressBar(s.err)
		scanner.Progress = bar.update
		results := scanner.Scan(c.Context(), targets)
		bar.finish()
		if asJSON {
			err = printScanJSON(s.out, results)
		} else {
			err = printScanTable(s.out, results, time.Now())
		}
		if err != nil {
			return err
		}
		if reportURL != "" {
			labels, err := monitor.ParseLabels(labelArgs)
			if err != nil {
				return usageError{fmt.Errorf("--label: %w", err)}
			}
			report := scanReport(results)
			report.Labels = labels
			conn := &connectFlags{mode: credentialAdmin, dataDir: dataDir, caURL: reportURL, certFile: certFile, keyFile: keyFile, passwordFile: passwordFile}
			n, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (int, error) {
				return cl.Report(ctx, report)
			})
			if err != nil {
				return fmt.Errorf("report to %s: %w", reportURL, err)
			}
			fmt.Fprintf(s.err, "Reported %d certificate chains to %s\n", n, reportURL)
		}
		return scanVerdict(s.err, results, threshold)
	}
	return cmd
}

// revocationChecker asks OCSP responders and CRLs unless off.
func revocationChecker(off bool, timeout time.Duration) *monitor.Revocation {
	if off {
		return nil
	}
	return &monitor.Revocation{Timeout: timeout}
}

// scanReport is what --report sends: every result, the chains as DER.
func scanReport(results []monitor.Result) client.ScanReport {
	report := client.ScanReport{Results: make([]client.ReportedResult, 0, len(results))}
	for _, r := range results {
		rr := client.ReportedResult{Scope: r.Scope, Target: r.Target, Kind: string(r.Kind), Error: r.Error, Silent: r.Silent, VerifyName: r.Source.VerifyName}
		for _, c := range r.Certs {
			rr.Chain = append(rr.Chain, c.Raw)
		}
		report.Results = append(report.Results, rr)
	}
	return report
}

// secretFrom reads a secret from where source says: file:PATH (its first
// line) or env:VAR. A secret itself is refused: a command line is visible
// to every user of the machine.
func secretFrom(source string) (string, error) {
	switch {
	case source == "":
		return "", nil
	case strings.HasPrefix(source, "file:"):
		f, err := os.Open(strings.TrimPrefix(source, "file:"))
		if err != nil {
			return "", err
		}
		defer f.Close()
		line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	case strings.HasPrefix(source, "env:"):
		v, ok := os.LookupEnv(strings.TrimPrefix(source, "env:"))
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", ca.Clip(strings.TrimPrefix(source, "env:")))
		}
		return v, nil
	}
	return "", errors.New("give file:PATH or env:VAR; a password on the command line is visible to every user of the machine")
}

// loadRoots reads the trusted roots from files; nil (the system's) when
// there are none.
func loadRoots(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, file := range files {
		certs, err := monitor.ReadFile(file, "")
		if err != nil {
			return nil, fmt.Errorf("root %s: %w", file, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

func printScanJSON(w io.Writer, results []monitor.Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if r.Silent {
			continue
		}
		if r.Chain == nil {
			r.Chain = []monitor.CertInfo{}
		}
		if r.Findings == nil {
			r.Findings = []monitor.Finding{}
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func printScanTable(w io.Writer, results []monitor.Result, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATUS\tEXPIRES\tSUBJECT\tFINDINGS")
	var details []string
	for _, r := range results {
		switch {
		case r.Silent:
			continue
		case r.Error != "":
			fmt.Fprintf(tw, "%s\terror\t-\t-\t%s\n", r.Target, r.Error)
			continue
		}
		status := "ok"
		if worst := monitor.Worst(r.Findings); worst > 0 {
			status = worst.String()
		}
		var checks []string
		for _, f := range r.Findings {
			if !slices.Contains(checks, f.Check) {
				checks = append(checks, f.Check)
			}
			details = append(details, fmt.Sprintf("%s\t%s\t%s\t%s", r.Target, f.Severity, f.Check, f.Message))
		}
		leaf := r.Chain[0]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Target, status, expiresPhrase(leaf.NotAfter, now), leaf.Subject, strings.Join(checks, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(details) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSEVERITY\tCHECK\tFINDING")
	for _, d := range details {
		fmt.Fprintln(tw, d)
	}
	return tw.Flush()
}

// scanVerdict prints a summary and returns the exit status: exitError when
// a target could not be scanned, exitChecked when a finding reached
// threshold.
func scanVerdict(w io.Writer, results []monitor.Result, threshold monitor.Severity) error {
	var scanned, failed, silent, flagged int
	for _, r := range results {
		switch {
		case r.Silent:
			silent++
		case r.Error != "":
			failed++
		default:
			scanned++
			if monitor.Worst(r.Findings) >= threshold {
				flagged++
			}
		}
	}
	summary := fmt.Sprintf("%d scanned, %d with findings at or above %s, %d could not be scanned", scanned, flagged, threshold, failed)
	if silent > 0 {
		summary += fmt.Sprintf(", %d had nothing to scan", silent)
	}
	fmt.Fprintln(w, summary)
	switch {
	case failed > 0:
		return exitCodeError{code: exitError, err: fmt.Errorf("%d targets could not be scanned", failed)}
	case flagged > 0:
		return exitCodeError{code: exitChecked}
	}
	return nil
}

// progressBar draws "scanning 120/5000" on a terminal, at most ten times a
// second; elsewhere it draws nothing.
type progressBar struct {
	w     io.Writer
	on    bool
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, on: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progressBar) update(done, total int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); done == total || now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		const width = 30
		filled := width * done / max(total, 1)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
		p.drawn = true
	}
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

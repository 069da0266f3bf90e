package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/policy"
)

func init() { register(newInventoryCommand) }

func newInventoryCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Every certificate the server knows: issued by it, or seen by scans",
		Long: `The inventory holds every certificate meshpki issued and every certificate a
scan saw (scheduled on the server with 'meshpki scan schedule add', or sent
with 'meshpki scan --report'), with where each was seen and its findings as
of now. docs/SCAN.md describes it.`,
	}
	cmd.AddCommand(newInventoryListCommand(s), newInventoryShowCommand(s))
	return cmd
}

func newInventoryListCommand(s *streams) *cobra.Command {
	var (
		source, name   string
		expiringWithin time.Duration
		limit          int
		all, active    bool
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "list [--expiring-within D] [--source issued|scanned] [--name N] [--active] [--all] [--json]",
		Short: "List the inventory, soonest expiry first",
		Long: `List certificates soonest expiry first: where they come from, subject,
names, when they expire and their worst finding. --expiring-within selects
those that expire within that duration ("14d"); --active those in service (an
issued certificate not revoked or renewed, a scanned one some endpoint or file
still presents); --name matches the subject's common name or any name exactly.

One page of --limit items (default 100, at most 1000) is shown; --all follows
the pages to the end.
` + adminConnectHelp,
		Example: `  meshpki inventory list --expiring-within 14d --data /var/lib/meshpki
  meshpki inventory list --source scanned --active --all --json --data /var/lib/meshpki`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "only certificates from this `SOURCE`: issued or scanned")
	f.StringVar(&name, "name", "", "only certificates with this common name or SAN `NAME`")
	durationVar(f, &expiringWithin, "expiring-within", 0, "only certificates that expire within this duration, e.g. 14d")
	f.BoolVar(&active, "active", false, "only certificates in service")
	f.IntVar(&limit, "limit", 0, "`N` items per page (default 100, max 1000)")
	f.BoolVar(&all, "all", false, "follow the pages to the end")
	f.BoolVar(&asJSON, "json", false, `print {"items": [...], "next": "..."} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		switch source {
		case "", "issued", "scanned":
		default:
			return usageError{fmt.Errorf("--source %q: use issued or scanned", source)}
		}
		if limit < 0 || limit > 1000 {
			return usageError{errors.New("--limit must be between 1 and 1000")}
		}
		if expiringWithin < 0 {
			return usageError{errors.New("--expiring-within must be positive")}
		}
		q := client.InventoryQuery{Source: source, Name: name, ExpiringWithin: expiringWithin, Active: active, Limit: limit}
		result, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (client.InventoryPage, error) {
			var result client.InventoryPage
			for {
				page, err := cl.ListInventory(ctx, q)
				if err != nil {
					return result, err
				}
				result.Items = append(result.Items, page.Items...)
				result.Next = page.Next
				if !all || page.Next == "" || page.Next == q.After {
					return result, nil
				}
				q.After = page.Next
			}
		})
		if err != nil {
			return err
		}
		if result.Items == nil {
			result.Items = []client.InventoryItem{}
		}
		return show(s.out, asJSON, result, func() error {
			if len(result.Items) == 0 {
				fmt.Fprintln(s.err, "no certificates match")
				return nil
			}
			return printInventory(s.out, result.Items, time.Now())
		})
	}
	return cmd
}

func printInventory(w io.Writer, items []client.InventoryItem, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tID\tSUBJECT\tNAMES\tEXPIRES\tWORST")
	for _, it := range items {
		id := string(it.Serial)
		if it.Source == "scanned" {
			id = it.Fingerprint[:16]
		}
		state := ""
		if !it.Active {
			state = " (not in service)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\t%s\n", it.Source, id, clipCell(it.Subject), shortNames(it.Names), expiresPhrase(it.NotAfter, now), state, worstFinding(it.Findings))
	}
	return tw.Flush()
}

// clipCell keeps a table cell readable.
func clipCell(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// worstFinding is "severity: check" of the first (worst) finding, or "ok".
func worstFinding(fs []client.Finding) string {
	if len(fs) == 0 {
		return "ok"
	}
	out := fs[0].Severity + ": " + fs[0].Check
	if len(fs) > 1 {
		out += fmt.Sprintf(" (+%d)", len(fs)-1)
	}
	return out
}

func newInventoryShowCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FINGERPRINT [--json]",
		Short: "Show a scanned certificate: its findings, chain and where it was seen",
		Long: `Show one scanned certificate by its SHA-256 fingerprint (as 'inventory list
--json' or 'scan --json' print it; colons and case do not matter): its
findings as of now, every place it was seen, first and last, and its chain.
` + adminConnectHelp,
		Example: `  meshpki inventory show 3f1c…e9 --data /var/lib/meshpki`,
		Args:    positionalArgs("FINGERPRINT"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the item as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		it, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.InventoryItem, error) {
			return cl.GetScanned(ctx, args[0])
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, it, func() error {
			now := time.Now()
			fmt.Fprintf(s.out, "Subject:     %s\nIssuer:      %s\nSerial:      %s\nNames:       %s\nExpires:     %s (%s)\nIn service:  %v\n",
				it.Subject, it.Issuer, it.Serial, strings.Join(it.Names, ", "), it.NotAfter.Format(time.RFC3339), expiresPhrase(it.NotAfter, now), it.Active)
			if it.IssuedSerial != "" {
				fmt.Fprintf(s.out, "Issued by this CA as serial %s\n", it.IssuedSerial)
			}
			fmt.Fprintln(s.out, "Findings:")
			if len(it.Findings) == 0 {
				fmt.Fprintln(s.out, "  none")
			}
			for _, f := range it.Findings {
				fmt.Fprintf(s.out, "  %-8s %-18s %s\n", f.Severity, f.Check, f.Message)
			}
			fmt.Fprintln(s.out, "Seen at:")
			for _, sg := range it.Sightings {
				cur := ""
				if sg.Current {
					cur = " (presents it now)"
				}
				fmt.Fprintf(s.out, "  %s%s: first %s, last %s\n", sg.Location, cur, agoPhrase(now.Sub(sg.FirstSeen)), agoPhrase(now.Sub(sg.LastSeen)))
			}
			fmt.Fprint(s.out, it.Chain)
			return nil
		})
	}
	return cmd
}

func newScanScheduleCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Scans the server runs on its own, into its inventory",
		Long: `Scan schedules run on the server every interval; what they see goes into the
inventory ('meshpki inventory list'). They scan network targets only (files
are scanned on their own host with 'meshpki scan --report'), and never reach
loopback or link-local addresses (cloud metadata) unless the server was
started with --allow-egress naming them. Each run is claimed by one replica.`,
	}
	cmd.AddCommand(newScheduleAddCommand(s), newScheduleListCommand(s), newScheduleRemoveCommand(s),
		nameCommand(s, "run NAME", "Run a scan schedule now", "Have the server run a scan schedule now, on demand; its interval goes on from this run.",
			"Started scan schedule", (*client.Client).RunSchedule))
	return cmd
}

func newScheduleAddCommand(s *streams) *cobra.Command {
	var (
		targets, labels  []string
		sni, startTLS    string
		every            = durationValue(time.Hour)
		timeout          = durationValue(monitor.DefaultTimeout)
		allowLarge, asJS bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME --target TARGET... [--every 1h]",
		Short: "Add a scan schedule; its first run starts at once",
		Long: `Add a schedule that scans its targets every interval (at least 1m). A target
is HOST:PORT, https://HOST[:PORT], or CIDR:PORTS, as for 'meshpki scan'.
` + adminConnectHelp,
		Example: `  meshpki scan schedule add edge --target https://www.example.com --target 10.0.0.0/24:443,8443 --every 1h --data /var/lib/meshpki`,
		Args:    positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringArrayVar(&targets, "target", nil, "`TARGET` to scan (repeatable)")
	f.Var(&every, "every", "`INTERVAL` between runs")
	f.StringVar(&sni, "sni", "", "server `NAME` to send and check, for every endpoint")
	f.StringVar(&startTLS, "starttls", "", "`PROTO` spoken before TLS: smtp, imap, postgres or none (default: by port)")
	f.Var(&timeout, "timeout", "`DURATION` each endpoint has")
	f.BoolVar(&allowLarge, "allow-large", false, "allow a CIDR of more than 4096 addresses")
	f.StringArrayVar(&labels, "label", nil, "`NAME=VALUE` label for what the schedule sees (repeatable), e.g. team=payments")
	f.BoolVar(&asJS, "json", false, "print the schedule as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		lbls, err := monitor.ParseLabels(labels)
		if err != nil {
			return usageError{fmt.Errorf("--label: %w", err)}
		}
		opts := monitor.ScheduleOptions{SNI: sni, StartTLS: startTLS, Timeout: policy.Duration(timeout), AllowLarge: allowLarge, Labels: lbls}
		if _, err := monitor.CheckSchedule(args[0], targets, time.Duration(every), opts); err != nil {
			return usageError{err}
		}
		sc, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.ScanSchedule, error) {
			return cl.AddSchedule(ctx, client.ScanSchedule{Name: args[0], Targets: targets, Every: policy.Duration(every),
				SNI: sni, StartTLS: startTLS, Timeout: policy.Duration(timeout), AllowLarge: allowLarge, Labels: lbls})
		})
		if err != nil {
			return err
		}
		return show(s.out, asJS, sc, func() error {
			_, err := fmt.Fprintf(s.out, "Added scan schedule %s: %d targets every %s; the first run starts now\n", sc.Name, len(sc.Targets), humanDuration(sc.Every.Std()))
			return err
		})
	}
	return cmd
}

func newScheduleListCommand(s *streams) *cobra.Command {
	return listCommand(s, "schedules", "List the scan schedules, with their last run",
		"List the scan schedules: targets, interval, next and last run, and the last run's error.",
		"no scan schedules", "NAME	EVERY	TARGETS	LAST RUN	NEXT RUN	LAST ERROR", (*client.Client).ListSchedules,
		func(sc client.ScanSchedule) string {
			now := time.Now()
			last := "never"
			if !sc.LastRun.IsZero() {
				last = agoPhrase(now.Sub(sc.LastRun))
			}
			next := "due"
			if sc.NextRun.After(now) {
				next = "in " + humanDuration(sc.NextRun.Sub(now))
			}
			return fmt.Sprintf("%s	%s	%s	%s	%s	%s", sc.Name, humanDuration(sc.Every.Std()), clipCell(strings.Join(sc.Targets, " ")), last, next, clipCell(sc.LastError))
		})
}

func newScheduleRemoveCommand(s *streams) *cobra.Command {
	return nameCommand(s, "remove NAME", "Remove a scan schedule", "Remove a scan schedule. What it saw stays in the inventory.",
		"Removed scan schedule", (*client.Client).RemoveSchedule)
}

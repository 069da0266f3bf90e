package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/policy"
)

func init() { register(newAlertCommand) }

func newAlertCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "Alerts on the inventory: channels, rules, firing alerts",
		Long: `The server turns the inventory's findings into alerts — one per rule,
certificate, check and threshold — and sends them to channels: a webhook in
Alertmanager's format, a Slack-compatible incoming webhook, or e-mail.
Channels marked --default get the built-in alerts with no rule: the CA's own
root and intermediates, and issued certificates whose renewal is overdue.
docs/ALERTS.md describes it all.`,
	}
	channel := &cobra.Command{Use: "channel", Short: "Where alerts are sent"}
	channel.AddCommand(newChannelAddCommand(s), newChannelListCommand(s), newChannelRemoveCommand(s))
	rule := &cobra.Command{Use: "rule", Short: "Which certificates and findings alert which channel"}
	rule.AddCommand(newRuleAddCommand(s), newRuleListCommand(s), newRuleRemoveCommand(s))
	cmd.AddCommand(channel, rule, newAlertTestCommand(s), newAlertListCommand(s))
	return cmd
}

func newChannelAddCommand(s *streams) *cobra.Command {
	var (
		rawURL, urlFrom, smtpAddr, from, username, passwordFrom, smtpRoot string
		to                                                                []string
		isDefault, asJSON                                                 bool
	)
	cmd := &cobra.Command{
		Use:   "add webhook|slack|email NAME [flags]",
		Short: "Add a channel",
		Long: `Add a channel.

  webhook  POSTs Alertmanager's webhook body (version 4) to --url, so
           receivers written for Alertmanager work unchanged.
  slack    POSTs {"text": …} to a Slack-compatible incoming webhook. Its URL
           is a secret: give it with --url-from file:PATH or env:VAR.
  email    mails --to from --from through --smtp HOST:PORT; the server must
           offer STARTTLS (alerts are never mailed in the clear) with a
           certificate the system's roots, the CA's, or --smtp-root trust.
           --username with --password-from file:PATH or env:VAR for AUTH.

The server keeps every channel's configuration sealed, and shows only where
it sends. Its own requests never reach loopback or link-local addresses
unless it was started with --allow-egress naming them.
` + adminConnectHelp,
		Example: `  meshpki alert channel add webhook am --url http://alertmanager-receiver.internal:9095/hook --default --data /var/lib/meshpki
  meshpki alert channel add slack platform --url-from env:SLACK_WEBHOOK_URL --data /var/lib/meshpki
  meshpki alert channel add email oncall --smtp mail.internal:587 --from meshpki@example.com --to oncall@example.com --data /var/lib/meshpki`,
		Args: positionalArgs("KIND", "NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&rawURL, "url", "", "webhook `URL` (not for slack, whose URL is a secret)")
	f.StringVar(&urlFrom, "url-from", "", "where the URL is: file:`PATH` or env:VAR")
	f.StringVar(&smtpAddr, "smtp", "", "mail server `HOST:PORT`")
	f.StringVar(&from, "from", "", "sender `ADDRESS`")
	f.StringArrayVar(&to, "to", nil, "recipient `ADDRESS` (repeatable)")
	f.StringVar(&username, "username", "", "SMTP AUTH `USER`")
	f.StringVar(&passwordFrom, "password-from", "", "where the SMTP password is: file:`PATH` or env:VAR")
	f.StringVar(&smtpRoot, "smtp-root", "", "PEM `FILE` of a root the mail server's certificate chains to")
	f.BoolVar(&isDefault, "default", false, "send the built-in alerts here too")
	f.BoolVar(&asJSON, "json", false, "print the channel as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		kind, name := args[0], args[1]
		if !slices.Contains([]string{"webhook", "slack", "email"}, kind) {
			return usageError{fmt.Errorf("channel kind %q: use webhook, slack or email", kind)}
		}
		req := client.AlertChannelRequest{Name: name, Kind: kind, Default: isDefault, URL: rawURL, SMTP: smtpAddr, From: from, To: to, Username: username}
		switch {
		case kind == "slack" && rawURL != "":
			return usageError{errors.New("--url: a Slack URL is a secret; give it with --url-from file:PATH or env:VAR")}
		case rawURL != "" && urlFrom != "":
			return usageError{errors.New("give --url or --url-from, not both")}
		case urlFrom != "":
			v, err := secretFrom(urlFrom)
			if err != nil {
				return usageError{fmt.Errorf("--url-from: %w", err)}
			}
			req.URL = v
		}
		if passwordFrom != "" {
			v, err := secretFrom(passwordFrom)
			if err != nil {
				return usageError{fmt.Errorf("--password-from: %w", err)}
			}
			req.Password = v
		}
		if smtpRoot != "" {
			pem, err := os.ReadFile(smtpRoot)
			if err != nil {
				return usageError{fmt.Errorf("--smtp-root: %w", err)}
			}
			req.RootPEM = string(pem)
		}
		ch, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.AlertChannel, error) {
			return cl.AddChannel(ctx, req)
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, ch, func() error {
			_, err := fmt.Fprintf(s.out, "Added %s channel %s (%s)\n", ch.Kind, ch.Name, ch.Endpoint)
			return err
		})
	}
	return cmd
}

func newChannelListCommand(s *streams) *cobra.Command {
	return listCommand(s, "channels", "List the channels",
		"List the channels: kind, where they send (no secret), and whether they get the built-in alerts.",
		"no channels", "NAME	KIND	DEFAULT	SENDS TO", (*client.Client).ListChannels,
		func(ch client.AlertChannel) string {
			dest := ch.Endpoint
			if len(ch.To) > 0 {
				dest += " → " + strings.Join(ch.To, ", ")
			}
			return fmt.Sprintf("%s	%s	%v	%s", ch.Name, ch.Kind, ch.Default, dest)
		})
}

func newChannelRemoveCommand(s *streams) *cobra.Command {
	return nameCommand(s, "remove NAME", "Remove a channel no rule uses", "Remove a channel. Remove the rules that use it first.",
		"Removed channel", (*client.Client).RemoveChannel)
}

func newRuleAddCommand(s *streams) *cobra.Command {
	var (
		channel, source, minSeverity string
		names, issuers, checks       []string
		labelArgs                    []string
		within                       time.Duration
		repeat                       = durationValue(24 * time.Hour)
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME --channel C [--check ID]... [--within 14d] [--name GLOB]...",
		Short: "Add a rule",
		Long: `Add a rule: which certificates (--name globs over the common name and SANs,
--source, --issuer globs), which checks (default all), how severe at least
(--min-severity, default warning), and how often a firing alert is sent again
(--repeat, default 24h). --within makes expires_soon alert only once a
certificate expires within it. Each alert fires once per certificate, check
and threshold, and resolves when the certificate is renewed, replaced or no
longer in service.
` + adminConnectHelp,
		Example: `  meshpki alert rule add edge-expiry --channel oncall --check expires_soon --check expired --within 14d --name '*.example.com' --data /var/lib/meshpki
  meshpki alert rule add weak --channel platform --check weak_key --check weak_signature --source scanned --data /var/lib/meshpki`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&channel, "channel", "", "the `CHANNEL` alerts go to (required)")
	f.StringArrayVar(&names, "name", nil, "`GLOB` over common name and SANs (repeatable; any may match)")
	f.StringVar(&source, "source", "", "only certificates from `SOURCE`: issued or scanned")
	f.StringArrayVar(&issuers, "issuer", nil, "`GLOB` over the issuer (repeatable)")
	f.StringArrayVar(&checks, "check", nil, "check `ID` that alerts (repeatable; default all)")
	f.StringArrayVar(&labelArgs, "label", nil, "`NAME=VALUE` the certificate must carry (repeatable): a scan's label, or provisioner=NAME")
	durationVar(f, &within, "within", 0, "expires_soon alerts only within this duration, e.g. 14d")
	f.StringVar(&minSeverity, "min-severity", "", "least `SEVERITY` that alerts: info, warning, error, critical (default warning)")
	f.Var(&repeat, "repeat", "`INTERVAL` after which a firing alert is sent again")
	f.BoolVar(&asJSON, "json", false, "print the rule as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if channel == "" {
			return usageError{errors.New("--channel is required")}
		}
		labels, err := monitor.ParseLabels(labelArgs)
		if err != nil {
			return usageError{fmt.Errorf("--label: %w", err)}
		}
		rule, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.AlertRule, error) {
			return cl.AddRule(ctx, client.AlertRule{Name: args[0], Channel: channel, Names: names, Source: source, Issuers: issuers, Labels: labels,
				Checks: checks, Within: policy.Duration(within), MinSeverity: minSeverity, Repeat: policy.Duration(repeat)})
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, rule, func() error {
			_, err := fmt.Fprintf(s.out, "Added rule %s → channel %s\n", rule.Name, rule.Channel)
			return err
		})
	}
	return cmd
}

func newRuleListCommand(s *streams) *cobra.Command {
	return listCommand(s, "rules", "List the rules", "List the rules and what each matches.",
		"no rules (channels marked --default still get the built-in alerts)", "NAME	CHANNEL	CHECKS	MATCHES	REPEAT",
		(*client.Client).ListRules, func(r client.AlertRule) string {
			checks := "all"
			if len(r.Checks) > 0 {
				checks = strings.Join(r.Checks, ",")
			}
			match := strings.Join(append(append([]string{}, r.Names...), r.Issuers...), " ")
			for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
				match = strings.TrimSpace(match + " " + k + "=" + r.Labels[k])
			}
			if r.Source != "" {
				match = strings.TrimSpace(r.Source + " " + match)
			}
			if match == "" {
				match = "every certificate"
			}
			return fmt.Sprintf("%s	%s	%s	%s	%s", r.Name, r.Channel, checks, clipCell(match), humanDuration(r.Repeat.Std()))
		})
}

func newRuleRemoveCommand(s *streams) *cobra.Command {
	return nameCommand(s, "remove NAME", "Remove a rule; its alerts resolve", "Remove a rule. Its firing alerts resolve at the next evaluation.",
		"Removed rule", (*client.Client).RemoveRule)
}

func newAlertTestCommand(s *streams) *cobra.Command {
	return nameCommand(s, "test CHANNEL", "Send a test alert to a channel now",
		"Have the server send a test alert to CHANNEL now and say whether it was delivered (exit 1 when not, with the reason).",
		"Delivered a test alert to", (*client.Client).TestChannel)
}

func newAlertListCommand(s *streams) *cobra.Command {
	var (
		state           string
		history, asJSON bool
		limit           int
	)
	cmd := &cobra.Command{
		Use:   "list [--state firing|resolved] [--history] [--json]",
		Short: "List alerts, or with --history the notifications sent",
		Long: `List alerts (default: firing and resolved) with their severity, what they are
about and since when; --history lists the notifications instead: when each
was queued and delivered, its attempts and last error.
` + adminConnectHelp,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only alerts in `STATE`: firing or resolved")
	f.BoolVar(&history, "history", false, "list the notifications sent instead")
	f.IntVar(&limit, "limit", 100, "at most `N` items")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if state != "" && state != "firing" && state != "resolved" {
			return usageError{fmt.Errorf("--state %q: use firing or resolved", state)}
		}
		if limit < 1 || limit > 1000 {
			return usageError{errors.New("--limit must be between 1 and 1000")}
		}
		now := time.Now()
		if history {
			list, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]client.Notification, error) {
				return cl.ListNotifications(ctx, limit)
			})
			if err != nil {
				return err
			}
			if list == nil {
				list = []client.Notification{}
			}
			return show(s.out, asJSON, map[string]any{"notifications": list}, func() error {
				tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCHANNEL\tSTATUS\tALERTS\tQUEUED\tRESULT\tATTEMPTS\tLAST ERROR")
				for _, n := range list {
					result := "pending, next in " + humanDuration(max(n.NextAttempt.Sub(now), 0))
					switch {
					case !n.DeliveredAt.IsZero():
						result = "delivered " + agoPhrase(now.Sub(n.DeliveredAt))
					case !n.FailedAt.IsZero():
						result = "gave up " + agoPhrase(now.Sub(n.FailedAt))
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", n.ID, n.Channel, n.Status, n.Alerts, agoPhrase(now.Sub(n.CreatedAt)), result, n.Attempts, clipCell(n.LastError))
				}
				return tw.Flush()
			})
		}
		list, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.AlertList, error) {
			return cl.ListAlerts(ctx, state, "", limit)
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, list, func() error {
			if len(list.Alerts) == 0 {
				fmt.Fprintln(s.err, "no alerts")
				return nil
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STATE\tSEVERITY\tCHECK\tSUMMARY\tRULE\tCHANNEL\tSINCE")
			for _, a := range list.Alerts {
				since := agoPhrase(now.Sub(a.FiredAt))
				if a.State == "resolved" {
					since = "resolved " + agoPhrase(now.Sub(a.ResolvedAt))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.State, a.Severity, a.Check, clipCell(a.Summary), a.Rule, a.Channel, since)
			}
			return tw.Flush()
		})
	}
	return cmd
}

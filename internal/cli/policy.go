package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
)

func init() { register(newPolicyCommand) }

func newPolicyCommand(s *streams) *cobra.Command {
	return groupCommand("policy",
		"Ask a provisioner's policy whether it would allow a request",
		`Ask a provisioner's policy questions without issuing anything: which names,
lifetimes and key types it would grant. Needs an admin.`,
		`  meshpki policy check --provisioner web --san db.example.internal --data /var/lib/meshpki`,
		newPolicyCheckCommand(s))
}

func newPolicyCheckCommand(s *streams) *cobra.Command {
	var (
		provisioner string
		sans        []string
		ttl         time.Duration
		keyType     string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "check --provisioner P --san NAME... [--ttl D] [--key-type T] [--json]",
		Short: "Say whether a provisioner would allow names, a lifetime and a key type",
		Long: `Ask the CA whether provisioner P's policy allows a certificate for the --san
names (repeat the flag or separate with commas), with lifetime --ttl and a key
of type --key-type, without issuing anything. It prints "allow" or "deny", the
rule that decided and why.

Exit status: 0 when allowed, 3 when denied, 1 on any error, 2 on a usage error.
` + adminConnectHelp,
		Example: `  meshpki policy check --provisioner web --san web.example.internal --ttl 48h --data /var/lib/meshpki
  if meshpki policy check --provisioner web --san db.example.internal --data /var/lib/meshpki >/dev/null; then echo allowed; fi`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&provisioner, "provisioner", "", "the `PROVISIONER` whose policy to ask")
	f.StringSliceVar(&sans, "san", nil, "a `NAME` to ask about (repeatable, comma-separated)")
	durationVar(f, &ttl, "ttl", 0, "certificate lifetime to ask about (default: the policy's default)")
	f.StringVar(&keyType, "key-type", "", "subject key `TYPE` to ask about, e.g. ec-p256 (default: not checked)")
	f.BoolVar(&asJSON, "json", false, "print the decision as JSON")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if err := requireFlags(c, "provisioner", "san"); err != nil {
			return err
		}
		if ttl < 0 {
			return usageError{errors.New("--ttl must be positive")}
		}
		req := client.PolicyCheckRequest{Provisioner: provisioner, SANs: trimAll(sans), TTL: policy.Duration(ttl)}
		if keyType != "" {
			kt, err := keys.ParseKeyType(keyType)
			if err != nil {
				return usageError{fmt.Errorf("--key-type: %w", err)}
			}
			req.KeyType = kt
		}
		d, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*policy.Decision, error) {
			return cl.CheckPolicy(ctx, req)
		})
		if err != nil {
			return err
		}
		if asJSON {
			if err := writeJSON(s.out, d); err != nil {
				return err
			}
		} else {
			verdict := "deny"
			if d.Allowed {
				verdict = "allow"
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, verdict)
			fmt.Fprintf(tw, "rule\t%s\n", d.Rule)
			fmt.Fprintf(tw, "reason\t%s\n", d.Reason)
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if !d.Allowed {
			return exitCodeError{code: exitChecked}
		}
		return nil
	}
	return cmd
}

package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/policy"
)

func init() { register(newTokenCommand) }

func newTokenCommand(s *streams) *cobra.Command {
	return groupCommand("token",
		"Create one-time tokens that authorise a certificate",
		`Create one-time tokens. A token authorises exactly one certificate for the
names it grants, within the policy of the provisioner that signed it; the
workload redeems it with 'meshpki cert issue'. Creating tokens needs an admin.`,
		`  meshpki token create web --san web.example.internal --data /var/lib/meshpki`,
		newTokenCreateCommand(s))
}

func newTokenCreateCommand(s *streams) *cobra.Command {
	var (
		sans        []string
		provisioner string
		ttl         time.Duration
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME --san NAME... [--provisioner P] [--ttl D] [--json]",
		Short: "Create a one-time token for a certificate named NAME",
		Long: `Create a one-time token for a certificate whose subject common name is NAME
and whose names are the --san values (DNS names, IP addresses, URIs or email
addresses; repeat the flag or separate with commas). Every name must pass the
provisioner's policy now, or no token is made.

A short summary goes to stderr and the token alone to the last line of
stdout, so TOKEN=$(meshpki token create …) captures just the token. The token
is a secret until it is used: hand it to the workload over a private channel.
--ttl is the token's own lifetime (default 5m, at most 24h), not the
certificate's.

--provisioner may be left out when the CA has exactly one token provisioner.
` + adminConnectHelp,
		Example: `  TOKEN=$(meshpki token create web --san web.example.internal --san 10.0.0.7 --data /var/lib/meshpki)
  meshpki token create api --san api.example.internal --provisioner web --ttl 1h \
      --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key --password-file pass.txt`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringSliceVar(&sans, "san", nil, "a `NAME` the certificate may carry (repeatable, comma-separated)")
	f.StringVar(&provisioner, "provisioner", "", "`PROVISIONER` whose policy applies (default: the only token provisioner)")
	f.DurationVar(&ttl, "ttl", 0, "lifetime of the token (default 5m, max 24h)")
	f.BoolVar(&asJSON, "json", false, "print the API's token object as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(sans) == 0 {
			return usageError{fmt.Errorf("--san is required (see '%s --help')", c.CommandPath())}
		}
		if ttl < 0 {
			return usageError{errors.New("--ttl must be positive")}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		defer cl.Close()
		tok, err := cl.CreateToken(c.Context(), client.TokenRequest{
			Subject:     args[0],
			SANs:        sans,
			Provisioner: provisioner,
			TTL:         policy.Duration(ttl),
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, tok)
		}
		fmt.Fprintf(s.err, "token for %q (%s) from provisioner %s, id %s, single use, %s\n",
			args[0], strings.Join(sans, ", "), tok.Provisioner, tok.ID, expiresPhrase(tok.ExpiresAt, time.Now()))
		_, err = fmt.Fprintln(s.out, tok.Token)
		return err
	}
	return cmd
}

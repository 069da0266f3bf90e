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
		"Create one-time tokens that authorise a certificate or a node",
		`Create one-time tokens. A token authorises exactly one certificate for the
names it grants, within the policy of the provisioner that signed it; the
workload redeems it with 'meshpki cert issue'. A join token (--join) instead
lets one node agent attest as a SPIFFE ID. Creating tokens needs an admin.`,
		`  meshpki token create web --san web.example.internal --data /var/lib/meshpki
  meshpki token create --join --spiffe-id spiffe://example.internal/node/n1 --data /var/lib/meshpki`,
		newTokenCreateCommand(s))
}

func newTokenCreateCommand(s *streams) *cobra.Command {
	var (
		sans        []string
		provisioner string
		ttl         time.Duration
		join        bool
		spiffeID    string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "create {NAME --san NAME... [--provisioner P] | --join --spiffe-id ID} [--ttl D] [--json]",
		Short: "Create a one-time token for a certificate named NAME, or a node join token",
		Long: `Create a one-time token for a certificate whose subject common name is NAME
and whose names are the --san values (DNS names, IP addresses, URIs or email
addresses; repeat the flag or separate with commas). Every name must pass the
provisioner's policy now, or no token is made.

With --join, create instead a join token with which one node agent attests
as the SPIFFE ID --spiffe-id (in the CA's trust domain) and gets its node
SVID: give it to 'meshpki agent' in a file (--join-token-file) or in
MESHPKI_JOIN_TOKEN, not on a command line other users can read. A join token
takes no NAME, --san or --provisioner.

A short summary goes to stderr and the token alone to the last line of
stdout, so TOKEN=$(meshpki token create …) captures just the token. The token
is a secret until it is used: hand it to the workload or node over a private
channel. --ttl is the token's own lifetime (default 5m, at most 24h; for a
join token default 1h, at most 168h), not the certificate's.

--provisioner may be left out when the CA has exactly one token provisioner.
` + adminConnectHelp,
		Example: `  TOKEN=$(meshpki token create web --san web.example.internal --san 10.0.0.7 --data /var/lib/meshpki)
  meshpki token create api --san api.example.internal --provisioner web --ttl 1h \
      --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key --password-file pass.txt
  JOIN=$(meshpki token create --join --spiffe-id spiffe://example.internal/node/n1 --ttl 2h --data /var/lib/meshpki)`,
		Args: func(c *cobra.Command, args []string) error {
			if join {
				if len(args) > 0 {
					return usageError{fmt.Errorf("unexpected argument %q: a join token names its node with --spiffe-id, not NAME (see '%s --help')", args[0], c.CommandPath())}
				}
				return nil
			}
			if len(args) == 0 {
				return usageError{fmt.Errorf("missing NAME, or --join --spiffe-id ID for a node join token (see '%s --help')", c.CommandPath())}
			}
			return positionalArgs("NAME")(c, args)
		},
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringSliceVar(&sans, "san", nil, "a `NAME` the certificate may carry (repeatable, comma-separated)")
	f.StringVar(&provisioner, "provisioner", "", "`PROVISIONER` whose policy applies (default: the only token provisioner)")
	durationVar(f, &ttl, "ttl", 0, "lifetime of the token (default 5m, max 24h; with --join default 1h, max 168h)")
	f.BoolVar(&join, "join", false, "create a node join token for --spiffe-id instead")
	f.StringVar(&spiffeID, "spiffe-id", "", "with --join: the node's SPIFFE `ID`, e.g. spiffe://example.internal/node/n1")
	f.BoolVar(&asJSON, "json", false, "print the API's token object as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if ttl < 0 {
			return usageError{errors.New("--ttl must be positive")}
		}
		if join {
			return createJoinToken(c, s, conn, spiffeID, ttl, asJSON)
		}
		if spiffeID != "" {
			return usageError{fmt.Errorf("--spiffe-id needs --join: it names the node of a join token (see '%s --help')", c.CommandPath())}
		}
		if len(sans) == 0 {
			return usageError{fmt.Errorf("--san is required (see '%s --help')", c.CommandPath())}
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

// createJoinToken creates a node join token for spiffeID and prints it.
func createJoinToken(c *cobra.Command, s *streams, conn *connectFlags, spiffeID string, ttl time.Duration, asJSON bool) error {
	for _, name := range []string{"san", "provisioner"} {
		if c.Flags().Changed(name) {
			return usageError{fmt.Errorf("--%s does not apply to a join token: it names only its node, with --spiffe-id (see '%s --help')", name, c.CommandPath())}
		}
	}
	if err := requireFlags(c, "spiffe-id"); err != nil {
		return err
	}
	cl, err := conn.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, err := cl.CreateJoinToken(c.Context(), client.JoinTokenRequest{SPIFFEID: strings.TrimSpace(spiffeID), TTL: ttl})
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(s.out, tok)
	}
	fmt.Fprintf(s.err, "join token for node %s, id %s, single use, %s; give it to the agent in --join-token-file or MESHPKI_JOIN_TOKEN\n",
		strings.TrimSpace(spiffeID), tok.ID, expiresPhrase(tok.ExpiresAt, time.Now()))
	_, err = fmt.Fprintln(s.out, tok.Token)
	return err
}

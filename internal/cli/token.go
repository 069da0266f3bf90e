package cli

import (
	"context"
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
		count       int
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

--count N makes N tokens for the same NAME and names at once (one request
each over one connection), printed one per line — or, with --json, as a JSON
array — for provisioning a batch of workloads. Each is single use. If one
fails, the tokens already made are printed and the command exits 1.
` + adminConnectHelp,
		Example: `  TOKEN=$(meshpki token create web --san web.example.internal --san 10.0.0.7 --data /var/lib/meshpki)
  meshpki token create api --san api.example.internal --provisioner web --ttl 1h \
      --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key --password-file pass.txt
  JOIN=$(meshpki token create --join --spiffe-id spiffe://example.internal/node/n1 --ttl 2h --data /var/lib/meshpki)
  meshpki token create batch --san batch.example.internal --count 100 --ttl 1h --data /var/lib/meshpki > tokens.txt`,
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
	f.BoolVar(&asJSON, "json", false, "print the API's token object as JSON (an array with --count)")
	f.IntVar(&count, "count", 1, "make `N` tokens for the same NAME and names (at most 10000)")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if ttl < 0 {
			return usageError{errors.New("--ttl must be positive")}
		}
		if count < 1 || count > maxTokenCount {
			return usageError{fmt.Errorf("--count must be between 1 and %d", maxTokenCount)}
		}
		if join && count != 1 {
			return usageError{fmt.Errorf("--count does not apply to a join token: each names its own node (see '%s --help')", c.CommandPath())}
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
		req := client.TokenRequest{Subject: args[0], SANs: sans, Provisioner: provisioner, TTL: policy.Duration(ttl)}
		if c.Flags().Changed("count") {
			return createTokens(c, s, cl, req, count, asJSON)
		}
		tok, err := cl.CreateToken(c.Context(), req)
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

// maxTokenCount bounds token create --count.
const maxTokenCount = 10000

// createTokens makes count tokens for req and prints them one per line (or
// as a JSON array), including those made before a failure.
func createTokens(c *cobra.Command, s *streams, cl *client.Client, req client.TokenRequest, count int, asJSON bool) error {
	toks := make([]*client.Token, 0, count)
	var err error
	for range count {
		var tok *client.Token
		if tok, err = cl.CreateToken(c.Context(), req); err != nil {
			break
		}
		toks = append(toks, tok)
	}
	if asJSON {
		if werr := writeJSON(s.out, toks); werr != nil {
			return werr
		}
	} else {
		for _, tok := range toks {
			if _, werr := fmt.Fprintln(s.out, tok.Token); werr != nil {
				return werr
			}
		}
	}
	if len(toks) > 0 {
		fmt.Fprintf(s.err, "%d tokens for %q (%s) from provisioner %s, each single use, %s\n",
			len(toks), req.Subject, strings.Join(req.SANs, ", "), toks[0].Provisioner, expiresPhrase(toks[0].ExpiresAt, time.Now()))
	}
	if err != nil {
		return fmt.Errorf("token %d of %d: %w", len(toks)+1, count, err)
	}
	return nil
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
	tok, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Token, error) {
		return cl.CreateJoinToken(ctx, client.JoinTokenRequest{SPIFFEID: strings.TrimSpace(spiffeID), TTL: ttl})
	})
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

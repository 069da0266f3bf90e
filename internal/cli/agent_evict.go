package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
)

// The admin subcommands of 'meshpki agent' that act on the server's record of
// attested nodes. The agent command group registers them.

func newAgentEvictCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evict NODE-SPIFFE-ID",
		Short: "Evict an attested node: it can no longer sync or get SVIDs",
		Long: `Evict the node that attested as NODE-SPIFFE-ID. From then on the server
refuses its agent: it can no longer sync entries or get SVIDs minted, and it
cannot attest again under that ID. SVIDs already handed out stay valid until
they expire. Eviction cannot be undone: a node that should come back attests
under a new SPIFFE ID.
` + adminConnectHelp,
		Example: `  meshpki agent evict spiffe://example.internal/node/n1 --data /var/lib/meshpki
  meshpki agent evict spiffe://example.internal/node/n1 \
      --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key`,
		Args: positionalArgs("NODE-SPIFFE-ID"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		id := strings.TrimSpace(args[0])
		if !strings.HasPrefix(id, "spiffe://") {
			return usageError{fmt.Errorf("%q is not a node's SPIFFE ID: want spiffe://TRUST-DOMAIN/PATH (see 'meshpki agent list')", args[0])}
		}
		if err := conn.do(c.Context(), func(ctx context.Context, cl *client.Client) error { return cl.EvictNode(ctx, id) }); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.out, "evicted node %s : it can no longer sync or get SVIDs\n", id)
		return err
	}
	return cmd
}

func newAgentListCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the nodes that have attested",
		Long: `List every node whose agent has attested to the server, evicted ones
included: its SPIFFE ID, how it attested (join_token or x509pop), whether it
is evicted, and when it first attested.
` + adminConnectHelp,
		Example: `  meshpki agent list --data /var/lib/meshpki
  meshpki agent list --json --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"nodes": [...]} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		nodes, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]client.Node, error) { return cl.ListNodes(ctx) })
		if err != nil {
			return err
		}
		if asJSON {
			if nodes == nil {
				nodes = []client.Node{}
			}
			return writeJSON(s.out, struct {
				Nodes []client.Node `json:"nodes"`
			}{nodes})
		}
		if len(nodes) == 0 {
			fmt.Fprintln(s.err, "no node has attested: create a join token with 'meshpki token create --join --spiffe-id ID' and start an agent with it")
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SPIFFE ID\tATTESTATION\tEVICTED\tATTESTED")
		for _, n := range nodes {
			evicted := "no"
			if n.Evicted {
				evicted = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.SPIFFEID, n.Attestation, evicted, agoPhrase(now.Sub(n.CreatedAt)))
		}
		return tw.Flush()
	}
	return cmd
}

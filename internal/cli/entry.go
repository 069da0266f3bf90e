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
	"github.com/meshpki/meshpki/internal/policy"
)

func init() { register(newEntryCommand) }

func newEntryCommand(s *streams) *cobra.Command {
	return groupCommand("entry",
		"Manage SPIFFE registration entries: which workloads get which SPIFFE ID",
		`Manage SPIFFE registration entries. An entry says that workloads matching its
selectors (e.g. unix:uid:1000), on the nodes its parent names, get its SPIFFE
ID: node agents sync the entries that apply to them and hand the workloads
X.509- and JWT-SVIDs through the Workload API. Entries are checked against
policy like every issuance: the ID must be in the CA's trust domain, and when
provisioners of type spiffe exist, one of them must allow it. All entry
commands need an admin.`,
		`  meshpki entry create --spiffe-id spiffe://example.internal/web --parent spiffe://example.internal/node/n1 \
      --selector unix:uid:1000 --data /var/lib/meshpki
  meshpki entry list --data /var/lib/meshpki`,
		newEntryCreateCommand(s),
		newEntryListCommand(s),
		newEntryShowCommand(s),
		newEntryUpdateCommand(s),
		newEntryDeleteCommand(s),
	)
}

// entryFlags are the flags that describe an entry.
type entryFlags struct {
	spiffeID  string
	parent    string
	selectors []string
	x509TTL   time.Duration
	jwtTTL    time.Duration
	dnsNames  []string
	hint      string
}

const entryFlagsHelp = `
--spiffe-id is the identity the workloads get. --parent is the SPIFFE ID of
the node whose agent serves the entry (as given to 'meshpki token create
--join'), or a node selector such as x509pop:subject:cn:web-1 that matches
every node attested with it. --selector (repeatable) is a workload selector
the workload must match; all must match: unix:uid:N, unix:gid:N,
unix:user:NAME, unix:group:NAME, unix:path:/abs/binary, unix:sha256:HEX.
--x509-ttl (default 1h) and --jwt-ttl (default 5m) are the SVID lifetimes,
--dns adds DNS names to the X.509-SVID, --hint is passed to workloads to tell
several SVIDs apart.`

func addEntryFlags(cmd *cobra.Command) *entryFlags {
	ef := &entryFlags{}
	f := cmd.Flags()
	f.StringVar(&ef.spiffeID, "spiffe-id", "", "the SPIFFE `ID` the workloads get")
	f.StringVar(&ef.parent, "parent", "", "the node's SPIFFE ID, or a node selector (`PARENT`)")
	f.StringArrayVar(&ef.selectors, "selector", nil, "a workload `SELECTOR` such as unix:uid:1000 (repeatable; all must match)")
	durationVar(f, &ef.x509TTL, "x509-ttl", 0, "lifetime of the X.509-SVIDs (default 1h)")
	durationVar(f, &ef.jwtTTL, "jwt-ttl", 0, "lifetime of the JWT-SVIDs (default 5m)")
	f.StringSliceVar(&ef.dnsNames, "dns", nil, "a DNS `NAME` the X.509-SVID also carries (repeatable, comma-separated)")
	f.StringVar(&ef.hint, "hint", "", "a `HINT` for workloads that get several SVIDs")
	return ef
}

// request checks the flags and builds the entry they describe.
func (ef *entryFlags) request(c *cobra.Command) (client.EntryRequest, error) {
	if err := requireFlags(c, "spiffe-id", "parent", "selector"); err != nil {
		return client.EntryRequest{}, err
	}
	if ef.x509TTL < 0 || ef.jwtTTL < 0 {
		return client.EntryRequest{}, usageError{errors.New("--x509-ttl and --jwt-ttl must be positive")}
	}
	return client.EntryRequest{
		SPIFFEID:  strings.TrimSpace(ef.spiffeID),
		Parent:    strings.TrimSpace(ef.parent),
		Selectors: trimAll(ef.selectors),
		X509TTL:   policy.Duration(ef.x509TTL),
		JWTTTL:    policy.Duration(ef.jwtTTL),
		DNSNames:  trimAll(ef.dnsNames),
		Hint:      ef.hint,
	}, nil
}

func newEntryCreateCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --spiffe-id ID --parent PARENT --selector SEL... [--x509-ttl D] [--jwt-ttl D] [--dns NAME...] [--hint H] [--json]",
		Short: "Create a registration entry",
		Long: `Create a registration entry and print it with its ID. Agents whose node
matches --parent pick it up at once and mint its SVIDs for the workloads that
match every --selector. An entry with the same SPIFFE ID, parent and
selectors must not exist already.
` + entryFlagsHelp + "\n" + adminConnectHelp,
		Example: `  meshpki entry create --spiffe-id spiffe://example.internal/web --parent spiffe://example.internal/node/n1 \
      --selector unix:uid:1000 --data /var/lib/meshpki
  meshpki entry create --spiffe-id spiffe://example.internal/db --parent x509pop:subject:cn:db-1 \
      --selector unix:user:postgres --selector unix:path:/usr/bin/postgres --x509-ttl 4h --dns db.example.internal \
      --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	ef := addEntryFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the created entry as JSON")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		req, err := ef.request(c)
		if err != nil {
			return err
		}
		e, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Entry, error) { return cl.CreateEntry(ctx, req) })
		if err != nil {
			return err
		}
		return show(s.out, asJSON, e, func() error {
			fmt.Fprintf(s.out, "created entry %s for %s\n", e.ID, e.SPIFFEID)
			return printEntry(s.out, e, time.Now())
		})
	}
	return cmd
}

func newEntryUpdateCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "update ID --spiffe-id ID --parent PARENT --selector SEL... [--x509-ttl D] [--jwt-ttl D] [--dns NAME...] [--hint H] [--json]",
		Short: "Replace a registration entry",
		Long: `Replace the whole of entry ID with the one the flags describe: the flags are
those of 'meshpki entry create', and anything not given again is dropped or
falls back to its default. Agents pick up the change at once; SVIDs already
handed out stay valid until they expire.
` + entryFlagsHelp + "\n" + adminConnectHelp,
		Example: `  meshpki entry update 3f9c2a1b --spiffe-id spiffe://example.internal/web --parent spiffe://example.internal/node/n1 \
      --selector unix:uid:1000 --selector unix:path:/usr/local/bin/web --x509-ttl 30m --data /var/lib/meshpki`,
		Args: positionalArgs("ID"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	ef := addEntryFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the updated entry as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		req, err := ef.request(c)
		if err != nil {
			return err
		}
		e, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Entry, error) {
			return cl.UpdateEntry(ctx, args[0], req)
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, e, func() error {
			fmt.Fprintf(s.out, "updated entry %s\n", e.ID)
			return printEntry(s.out, e, time.Now())
		})
	}
	return cmd
}

func newEntryListCommand(s *streams) *cobra.Command {
	var (
		spiffeID, parent string
		asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "list [--spiffe-id ID] [--parent PARENT] [--json]",
		Short: "List registration entries",
		Long: `List every registration entry, ordered by ID: its SPIFFE ID, parent,
selectors, X.509-SVID lifetime and when it last changed. --spiffe-id and
--parent select exact matches. 'meshpki entry show ID' prints one in full.
` + adminConnectHelp,
		Example: `  meshpki entry list --data /var/lib/meshpki
  meshpki entry list --parent spiffe://example.internal/node/n1 --json --data /var/lib/meshpki`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	f := cmd.Flags()
	f.StringVar(&spiffeID, "spiffe-id", "", "only entries for this SPIFFE `ID`")
	f.StringVar(&parent, "parent", "", "only entries with this `PARENT`")
	f.BoolVar(&asJSON, "json", false, `print {"entries": [...]} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		q := client.EntryQuery{SPIFFEID: spiffeID, Parent: parent, Limit: 1000}
		entries := []client.Entry{}
		err := conn.do(c.Context(), func(ctx context.Context, cl *client.Client) error {
			for {
				page, err := cl.ListEntries(ctx, q)
				if err != nil {
					return err
				}
				entries = append(entries, page.Entries...)
				if page.Next == "" || page.Next == q.After {
					return nil
				}
				q.After = page.Next
			}
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, struct {
				Entries []client.Entry `json:"entries"`
			}{entries})
		}
		if len(entries) == 0 {
			fmt.Fprintln(s.err, "no entries match: create one with 'meshpki entry create --spiffe-id ID --parent NODE --selector unix:uid:N'")
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSPIFFE ID\tPARENT\tSELECTORS\tX509 TTL\tCHANGED")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.SPIFFEID, e.Parent, strings.Join(e.Selectors, ","),
				humanDuration(e.X509TTL.Std()), agoPhrase(now.Sub(e.UpdatedAt)))
		}
		return tw.Flush()
	}
	return cmd
}

func newEntryShowCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show a registration entry",
		Long:  "Show registration entry ID with every field.\n" + adminConnectHelp,
		Example: `  meshpki entry show 3f9c2a1b --data /var/lib/meshpki
  meshpki entry show 3f9c2a1b --json --data /var/lib/meshpki`,
		Args: positionalArgs("ID"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the entry as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		e, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Entry, error) { return cl.GetEntry(ctx, args[0]) })
		if err != nil {
			return err
		}
		return show(s.out, asJSON, e, func() error { return printEntry(s.out, e, time.Now()) })
	}
	return cmd
}

func newEntryDeleteCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a registration entry",
		Long: `Delete registration entry ID. Agents stop serving its SVIDs when they next
sync, at once while they are connected; SVIDs already handed out stay valid
until they expire.
` + adminConnectHelp,
		Example: `  meshpki entry delete 3f9c2a1b --data /var/lib/meshpki`,
		Args:    positionalArgs("ID"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := conn.do(c.Context(), func(ctx context.Context, cl *client.Client) error { return cl.DeleteEntry(ctx, args[0]) }); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.out, "deleted entry %s\n", args[0])
		return err
	}
	return cmd
}

// printEntry prints an entry, one field per line.
func printEntry(w io.Writer, e *client.Entry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", e.ID)
	fmt.Fprintf(tw, "spiffe id\t%s\n", e.SPIFFEID)
	fmt.Fprintf(tw, "parent\t%s\n", e.Parent)
	fmt.Fprintf(tw, "selectors\t%s\n", strings.Join(e.Selectors, ", "))
	fmt.Fprintf(tw, "x509-svid ttl\t%s\n", humanDuration(e.X509TTL.Std()))
	fmt.Fprintf(tw, "jwt-svid ttl\t%s\n", humanDuration(e.JWTTTL.Std()))
	if len(e.DNSNames) > 0 {
		fmt.Fprintf(tw, "dns names\t%s\n", strings.Join(e.DNSNames, ", "))
	}
	if e.Hint != "" {
		fmt.Fprintf(tw, "hint\t%s\n", e.Hint)
	}
	fmt.Fprintf(tw, "revision\t%d\n", e.Revision)
	fmt.Fprintf(tw, "created\t%s (%s)\n", e.CreatedAt.UTC().Format(time.RFC3339), agoPhrase(now.Sub(e.CreatedAt)))
	if !e.UpdatedAt.Equal(e.CreatedAt) {
		fmt.Fprintf(tw, "updated\t%s (%s)\n", e.UpdatedAt.UTC().Format(time.RFC3339), agoPhrase(now.Sub(e.UpdatedAt)))
	}
	return tw.Flush()
}

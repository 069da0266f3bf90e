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
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

func init() { register(newProvisionerCommand) }

// provisionerTypes are the TYPE values the CLI accepts.
var provisionerTypes = []string{"token", "acme", "spiffe", "node"}

func newProvisionerCommand(s *streams) *cobra.Command {
	return groupCommand("provisioner",
		"Manage provisioners: who may request certificates, and the policy that bounds them",
		`Manage provisioners. A provisioner is a named source of credentials (one-time
tokens, or ACME accounts) with a policy: which DNS names, IP ranges, URIs and
email addresses it may grant, which lifetimes and key types, and which
intermediate signs. Deny rules win over allow rules, and a name no allow rule
covers is denied. All provisioner commands need an admin.`,
		`  meshpki provisioner add token web --allow-dns '*.example.internal' --max-ttl 72h --data /var/lib/meshpki
  meshpki provisioner list --data /var/lib/meshpki`,
		newProvisionerAddCommand(s),
		newProvisionerListCommand(s),
		newProvisionerShowCommand(s),
		newProvisionerUpdateCommand(s),
		newProvisionerRemoveCommand(s),
	)
}

// policyFlags are the flags that describe a provisioner's policy.
type policyFlags struct {
	allowDNS, denyDNS     []string
	allowIP, denyIP       []string
	allowURI, denyURI     []string
	allowEmail, denyEmail []string
	defaultTTL, maxTTL    time.Duration
	keyTypes              []string
	issuer                string
	requireEAB            bool     // not policy: an acme provisioner setting
	nodes                 []string // not policy: the nodes a node provisioner serves
}

const policyFlagsHelp = `
Policy flags take several values, repeated or comma-separated:
  --allow-dns/--deny-dns      DNS names; "*.example.internal" matches one label
  --allow-ip/--deny-ip        CIDRs or single addresses
  --allow-uri/--deny-uri      exact URIs, or prefixes ending in "/" or "/*"
  --allow-email/--deny-email  "user@domain", or "@domain" for a whole domain
--default-ttl and --max-ttl bound certificate lifetimes (defaults 24h and 168h),
--key-types limits subject keys (default: all supported), --issuer names the
signing intermediate (default "default"). For acme, --require-eab refuses new
accounts without an external account binding ('meshpki acme eab create').
For node, --node names the attested nodes that may declare certificates
through it (docs/MANIFESTS.md): a node SPIFFE ID, a prefix of them ending in
"/*", or a node selector such as x509pop:subject:cn:web-1.`

func addPolicyFlags(cmd *cobra.Command) *policyFlags {
	pf := &policyFlags{}
	f := cmd.Flags()
	f.StringSliceVar(&pf.allowDNS, "allow-dns", nil, "DNS `NAMES` or wildcards to allow")
	f.StringSliceVar(&pf.denyDNS, "deny-dns", nil, "DNS `NAMES` or wildcards to deny")
	f.StringSliceVar(&pf.allowIP, "allow-ip", nil, "IP ranges (`CIDRS`) or addresses to allow")
	f.StringSliceVar(&pf.denyIP, "deny-ip", nil, "IP ranges (`CIDRS`) or addresses to deny")
	f.StringSliceVar(&pf.allowURI, "allow-uri", nil, "`URIS` or URI prefixes (ending in / or /*) to allow")
	f.StringSliceVar(&pf.denyURI, "deny-uri", nil, "`URIS` or URI prefixes to deny")
	f.StringSliceVar(&pf.allowEmail, "allow-email", nil, "email `ADDRESSES`, or @domain, to allow")
	f.StringSliceVar(&pf.denyEmail, "deny-email", nil, "email `ADDRESSES`, or @domain, to deny")
	durationVar(f, &pf.defaultTTL, "default-ttl", 0, "certificate lifetime when a request names none (default 24h)")
	durationVar(f, &pf.maxTTL, "max-ttl", 0, "longest certificate lifetime allowed (default 168h)")
	f.StringSliceVar(&pf.keyTypes, "key-types", nil, "subject key `TYPES` allowed, e.g. ec-p256,ed25519 (default: all)")
	f.StringVar(&pf.issuer, "issuer", "", "`NAME` of the intermediate that signs (default \"default\")")
	f.BoolVar(&pf.requireEAB, "require-eab", false, "acme only: new accounts need an external account binding")
	f.StringSliceVar(&pf.nodes, "node", nil, "node only: `NODES` that may declare certificates (SPIFFE IDs, ID/* prefixes, selectors)")
	return pf
}

// policy builds the policy the flags describe.
func (pf *policyFlags) policy() (policy.Policy, error) {
	if pf.defaultTTL < 0 || pf.maxTTL < 0 {
		return policy.Policy{}, usageError{errors.New("--default-ttl and --max-ttl must be positive")}
	}
	p := policy.Policy{
		AllowDNS:   trimAll(pf.allowDNS),
		DenyDNS:    trimAll(pf.denyDNS),
		AllowIP:    trimAll(pf.allowIP),
		DenyIP:     trimAll(pf.denyIP),
		AllowURI:   trimAll(pf.allowURI),
		DenyURI:    trimAll(pf.denyURI),
		AllowEmail: trimAll(pf.allowEmail),
		DenyEmail:  trimAll(pf.denyEmail),
		DefaultTTL: policy.Duration(pf.defaultTTL),
		MaxTTL:     policy.Duration(pf.maxTTL),
		Issuer:     strings.TrimSpace(pf.issuer),
	}
	for _, name := range trimAll(pf.keyTypes) {
		kt, err := keys.ParseKeyType(name)
		if err != nil {
			return policy.Policy{}, usageError{fmt.Errorf("--key-types: %w", err)}
		}
		p.KeyTypes = append(p.KeyTypes, kt)
	}
	return p, nil
}

// trimAll trims spaces and drops empty values.
func trimAll(values []string) []string {
	var out []string
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func checkProvisionerType(typ string) error {
	for _, t := range provisionerTypes {
		if typ == t {
			return nil
		}
	}
	return usageError{fmt.Errorf("unknown provisioner type %q: use %s", typ, strings.Join(provisionerTypes, " or "))}
}

func newProvisionerAddCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "add TYPE NAME [policy flags]",
		Short: "Add a provisioner of TYPE token, acme, spiffe or node",
		Long: `Add a provisioner. TYPE is "token" (one-time tokens from 'meshpki token create'),
"acme" (RFC 8555 clients at /acme/NAME/directory), "spiffe" (its policy
decides which SPIFFE IDs, DNS names and lifetimes registration entries may
have; see docs/SPIFFE.md) or "node" (the certificates the nodes it names may
declare in manifests; see docs/MANIFESTS.md). A provisioner with no allow rules grants no names:
give at least one --allow-* flag, now or later with 'meshpki provisioner update'.
` + policyFlagsHelp + "\n" + adminConnectHelp,
		Example: `  meshpki provisioner add token web --allow-dns '*.web.example.internal' \
      --deny-dns admin.web.example.internal --allow-ip 10.0.0.0/8 --max-ttl 72h --data /var/lib/meshpki
  meshpki provisioner add node web-hosts --node 'spiffe://example.internal/node/web/*' \
      --allow-dns '*.web.example.internal' --max-ttl 720h --data /var/lib/meshpki`,
		Args: positionalArgs("TYPE", "NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	pf := addPolicyFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the created provisioner as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		return changeProvisioner(c, s, conn, pf, asJSON, args, "added", (*client.Client).CreateProvisioner)
	}
	return cmd
}

// changeProvisioner sends the provisioner TYPE NAME (args) with the policy
// the flags describe through send, and prints the result.
func changeProvisioner(c *cobra.Command, s *streams, conn *connectFlags, pf *policyFlags, asJSON bool, args []string, verb string,
	send func(*client.Client, context.Context, client.Provisioner) (*client.Provisioner, error)) error {
	if err := checkProvisionerType(args[0]); err != nil {
		return err
	}
	if pf.requireEAB && args[0] != "acme" {
		return usageError{errors.New("--require-eab applies only to acme provisioners")}
	}
	if nodes := trimAll(pf.nodes); (len(nodes) > 0) != (args[0] == "node") {
		return usageError{errors.New("a node provisioner needs --node, and only node provisioners take it")}
	}
	pol, err := pf.policy()
	if err != nil {
		return err
	}
	p, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Provisioner, error) {
		return send(cl, ctx, client.Provisioner{Name: args[1], Type: store.ProvisionerType(args[0]), Policy: pol, RequireEAB: pf.requireEAB, Nodes: trimAll(pf.nodes)})
	})
	if err != nil {
		return err
	}
	return show(s.out, asJSON, p, func() error {
		fmt.Fprintf(s.out, "%s %s provisioner %s\n", verb, p.Type, p.Name)
		return printProvisioner(s.out, p)
	})
}

func newProvisionerUpdateCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "update TYPE NAME [policy flags]",
		Short: "Replace the policy of a provisioner",
		Long: `Replace the whole policy of provisioner NAME with the one the flags describe:
rules not given again are dropped. Certificates already issued are not
touched; renewals are checked against the new policy.
` + policyFlagsHelp + "\n" + adminConnectHelp,
		Example: `  meshpki provisioner update token web --allow-dns '*.web.example.internal,*.api.example.internal' \
      --key-types ec-p256,ed25519 --data /var/lib/meshpki`,
		Args: positionalArgs("TYPE", "NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	pf := addPolicyFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the updated provisioner as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		return changeProvisioner(c, s, conn, pf, asJSON, args, "updated", (*client.Client).UpdateProvisioner)
	}
	return cmd
}

func newProvisionerListCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List provisioners",
		Long: `List every provisioner with its type, issuer, lifetimes and how many allow and
deny rules its policy has. 'meshpki provisioner show NAME' prints the rules.
` + adminConnectHelp,
		Example: `  meshpki provisioner list --data /var/lib/meshpki
  meshpki provisioner list --json --ca-url https://ca.example.internal:8443 --root root.crt --cert admin.crt --key admin.key`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"provisioners": [...]} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		list, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]client.Provisioner, error) {
			return cl.ListProvisioners(ctx)
		})
		if err != nil {
			return err
		}
		if asJSON {
			if list == nil {
				list = []client.Provisioner{}
			}
			return writeJSON(s.out, struct {
				Provisioners []client.Provisioner `json:"provisioners"`
			}{list})
		}
		if len(list) == 0 {
			fmt.Fprintln(s.err, "no provisioners: add one with 'meshpki provisioner add token NAME --allow-dns …'")
			return nil
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTYPE\tISSUER\tDEFAULT TTL\tMAX TTL\tRULES")
		for _, p := range list {
			allow, deny := ruleCounts(p.Policy)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d allow, %d deny\n", p.Name, p.Type, issuerName(p.Policy),
				ttlText(p.Policy.DefaultTTL, p.Policy.EffectiveDefaultTTL()), ttlText(p.Policy.MaxTTL, policy.DefaultMaxTTL), allow, deny)
		}
		return tw.Flush()
	}
	return cmd
}

func newProvisionerShowCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME [--json]",
		Short: "Show a provisioner and its policy",
		Long:  "Show provisioner NAME: its type and every rule of its policy.\n" + adminConnectHelp,
		Example: `  meshpki provisioner show web --data /var/lib/meshpki
  meshpki provisioner show web --json --data /var/lib/meshpki`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the provisioner as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		p, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.Provisioner, error) {
			return cl.GetProvisioner(ctx, args[0])
		})
		if err != nil {
			return err
		}
		return show(s.out, asJSON, p, func() error { return printProvisioner(s.out, p) })
	}
	return cmd
}

func newProvisionerRemoveCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a provisioner",
		Long: `Remove provisioner NAME. Its unused tokens stop working; certificates it
issued stay valid until they expire or are revoked, but can no longer be
renewed.
` + adminConnectHelp,
		Example: `  meshpki provisioner remove web --data /var/lib/meshpki`,
		Args:    positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := conn.do(c.Context(), func(ctx context.Context, cl *client.Client) error { return cl.DeleteProvisioner(ctx, args[0]) }); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.out, "removed provisioner %s\n", args[0])
		return err
	}
	return cmd
}

// printProvisioner prints a provisioner and its rules, one per line.
func printProvisioner(w io.Writer, p *client.Provisioner) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	pol := p.Policy
	fmt.Fprintf(tw, "name\t%s\n", p.Name)
	fmt.Fprintf(tw, "type\t%s\n", p.Type)
	if p.Type == "acme" {
		fmt.Fprintf(tw, "directory\t/acme/%s/directory\n", p.Name)
		eab := "optional"
		if p.RequireEAB {
			eab = "required"
		}
		fmt.Fprintf(tw, "external account binding\t%s\n", eab)
	}
	for _, n := range p.Nodes {
		fmt.Fprintf(tw, "node\t%s\n", n)
	}
	fmt.Fprintf(tw, "issuer\t%s\n", issuerName(pol))
	fmt.Fprintf(tw, "default ttl\t%s\n", ttlText(pol.DefaultTTL, pol.EffectiveDefaultTTL()))
	fmt.Fprintf(tw, "max ttl\t%s\n", ttlText(pol.MaxTTL, policy.DefaultMaxTTL))
	keyTypes := "all supported"
	if len(pol.KeyTypes) > 0 {
		names := make([]string, len(pol.KeyTypes))
		for i, kt := range pol.KeyTypes {
			names[i] = string(kt)
		}
		keyTypes = strings.Join(names, ", ")
	}
	fmt.Fprintf(tw, "key types\t%s\n", keyTypes)
	for _, rule := range []struct {
		name   string
		values []string
	}{
		{"allow dns", pol.AllowDNS}, {"deny dns", pol.DenyDNS},
		{"allow ip", pol.AllowIP}, {"deny ip", pol.DenyIP},
		{"allow uri", pol.AllowURI}, {"deny uri", pol.DenyURI},
		{"allow email", pol.AllowEmail}, {"deny email", pol.DenyEmail},
	} {
		if len(rule.values) > 0 {
			fmt.Fprintf(tw, "%s\t%s\n", rule.name, strings.Join(rule.values, ", "))
		}
	}
	if allow, _ := ruleCounts(pol); allow == 0 {
		fmt.Fprintf(tw, "names\tnone allowed: add rules with 'meshpki provisioner update %s %s --allow-dns …'\n", p.Type, p.Name)
	}
	return tw.Flush()
}

func ruleCounts(p policy.Policy) (allow, deny int) {
	allow = len(p.AllowDNS) + len(p.AllowIP) + len(p.AllowURI) + len(p.AllowEmail)
	deny = len(p.DenyDNS) + len(p.DenyIP) + len(p.DenyURI) + len(p.DenyEmail)
	return allow, deny
}

func issuerName(p policy.Policy) string {
	if p.Issuer == "" {
		return "default"
	}
	return p.Issuer
}

// ttlText prints a policy lifetime, or the default it stands for when zero.
func ttlText(d policy.Duration, def time.Duration) string {
	if d == 0 {
		return humanDuration(def) + " (default)"
	}
	return humanDuration(d.Std())
}

package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/spf13/cobra"
)

func init() { register(newACMECommand) }

func newACMECommand(s *streams) *cobra.Command {
	return groupCommand("acme",
		"Manage what ACME clients need: external account binding keys",
		`Manage ACME. Each acme provisioner serves RFC 8555 at /acme/NAME/directory
(add one with 'meshpki provisioner add acme NAME --allow-dns …'). A provisioner
added with --require-eab accepts new accounts only with an external account
binding key made here: give its key id and HMAC key to the ACME client (certbot
--eab-kid/--eab-hmac-key, lego --eab --kid/--hmac, cert-manager's
externalAccountBinding).`,
		`  meshpki acme eab create --provisioner internal-acme --data /var/lib/meshpki
  meshpki acme eab list --provisioner internal-acme --data /var/lib/meshpki`,
		groupCommand("eab",
			"Create and list external account binding keys",
			`Create and list external account binding (EAB) keys of an acme provisioner.
Each key binds one ACME account; the HMAC key is shown once, at creation.`,
			`  meshpki acme eab create --provisioner internal-acme --data /var/lib/meshpki`,
			newEABCreateCommand(s), newEABListCommand(s)))
}

func newEABCreateCommand(s *streams) *cobra.Command {
	var (
		provisioner string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "create --provisioner NAME [--json]",
		Short: "Create an external account binding key",
		Long: `Create an external account binding key for acme provisioner NAME and print
its key id and HMAC key (base64url). The HMAC key is a secret shown only now:
hand it to the ACME client over a private channel. The server keeps it sealed.
` + adminConnectHelp,
		Example: `  meshpki acme eab create --provisioner internal-acme --data /var/lib/meshpki
  certbot register --server https://ca.example.internal:8443/acme/internal-acme/directory \
      --eab-kid KID --eab-hmac-key HMAC`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().StringVar(&provisioner, "provisioner", "", "acme provisioner `NAME` (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"key_id","hmac_key","provisioner","created_at"} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if provisioner == "" {
			return usageError{fmt.Errorf("--provisioner is required (see '%s --help')", c.CommandPath())}
		}
		k, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.EABKey, error) {
			return cl.CreateEABKey(ctx, provisioner)
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, k)
		}
		fmt.Fprintf(s.err, "Created an external account binding key for provisioner %s. The HMAC key is shown only now.\n", k.Provisioner)
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "key id\t%s\n", k.KeyID)
		fmt.Fprintf(tw, "hmac key\t%s\n", k.HMACKey)
		return tw.Flush()
	}
	return cmd
}

func newEABListCommand(s *streams) *cobra.Command {
	var (
		provisioner string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:     "list --provisioner NAME [--json]",
		Short:   "List external account binding keys and the accounts they bound",
		Long:    "List the external account binding keys of acme provisioner NAME (never their secrets).\n" + adminConnectHelp,
		Example: `  meshpki acme eab list --provisioner internal-acme --data /var/lib/meshpki`,
		Args:    positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().StringVar(&provisioner, "provisioner", "", "acme provisioner `NAME` (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"keys": [...]} as JSON`)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if provisioner == "" {
			return usageError{fmt.Errorf("--provisioner is required (see '%s --help')", c.CommandPath())}
		}
		keys, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]client.EABKeyInfo, error) {
			return cl.ListEABKeys(ctx, provisioner)
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, map[string]any{"keys": keys})
		}
		if len(keys) == 0 {
			fmt.Fprintf(s.out, "provisioner %s has no external account binding keys: make one with 'meshpki acme eab create --provisioner %s'\n", provisioner, provisioner)
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tCREATED\tBOUND TO ACCOUNT")
		for _, k := range keys {
			bound := "unused"
			if k.BoundAccount != "" {
				bound = k.BoundAccount + " (" + agoPhrase(now.Sub(k.BoundAt)) + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.KeyID, agoPhrase(now.Sub(k.CreatedAt)), bound)
		}
		return tw.Flush()
	}
	return cmd
}

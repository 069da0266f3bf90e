package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/duration"
)

func init() { register(newUICommand) }

func newUICommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "The dashboard the server serves at /ui/",
		Args:  positionalArgs(),
	}
	cmd.AddCommand(newUILoginCommand(s))
	return cmd
}

func newUILoginCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "login --data DIR | --cert FILE --key FILE --ca-url URL",
		Short: "Print a one-time URL that signs you in to the dashboard",
		Long: `Print a one-time URL that signs the admin whose credential this command uses
in to the dashboard at /ui/. Open it in a browser and press Sign in: the URL
then stops working, and the browser holds a session cookie (Secure, HttpOnly,
SameSite=Strict) for 8 hours. The URL itself stops working after 5 minutes.
Everything done in the dashboard is audited as that admin.
` + adminConnectHelp,
		Example: `  meshpki ui login --data /var/lib/meshpki
  meshpki ui login --cert admin.crt --key admin.key --ca-url https://ca.example.internal:8443 --root root.crt`,
		Args: positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {\"url\", \"expires\"} as JSON")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		login, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.UILogin, error) {
			return cl.CreateUILogin(ctx)
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, login)
		}
		_, err = fmt.Fprintf(s.out, "%s\n(one use; it stops working in %s)\n", login.URL, duration.Format(time.Until(login.Expires).Round(time.Second)))
		return err
	}
	return cmd
}

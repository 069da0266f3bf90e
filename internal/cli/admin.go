package cli

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

func init() { register(newAdminCommand) }

func newAdminCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Operators of the CA and their roles: add, list, revoke",
		Long: `Operators administer the CA, each with one role (docs/ROLES.md):

  admin     everything: provisioners, roles, alert channels and rules, scan
            schedules, join tokens, evictions, and what the others may do
  operator  mints one-time tokens and EAB keys, manages registration entries
            and revokes certificates, for the provisioners it is granted
  auditor   reads certificates, the inventory, configuration and the audit log
  viewer    reads certificates, the inventory and configuration

The bootstrap credential the server writes to DIR/secrets is operator
"bootstrap", the first admin; retire it once another admin exists.`,
		Args: positionalArgs(),
	}
	cmd.AddCommand(newAdminAddCommand(s), newAdminCredentialCommand(s), newAdminListCommand(s), newAdminRevokeCommand(s))
	return cmd
}

// operatorKeyFlags say where an operator's new credential goes.
type operatorKeyFlags struct {
	out          string
	passwordFile string
	ttl          time.Duration
}

func addOperatorKeyFlags(cmd *cobra.Command) *operatorKeyFlags {
	kf := &operatorKeyFlags{}
	f := cmd.Flags()
	f.StringVar(&kf.out, "out", "", "`DIR` to write NAME.crt and NAME.key to (made 0700)")
	f.StringVar(&kf.passwordFile, "key-password-file", "", "`FILE` holding the passphrase that encrypts NAME.key (required: the key is never written in the clear)")
	durationVar(f, &kf.ttl, "ttl", 0, "lifetime of the credential (default 30d); renew it with 'meshpki cert renew'")
	return kf
}

// newKey makes the operator's key and its CSR, after checking the flags.
func (kf *operatorKeyFlags) newKey(name string) (crypto.Signer, string, []byte, error) {
	if kf.out == "" || kf.passwordFile == "" {
		return nil, "", nil, usageError{errors.New("--out and --key-password-file are required")}
	}
	if kf.ttl < 0 {
		return nil, "", nil, usageError{errors.New("--ttl must be positive")}
	}
	if err := checkFileName(name); err != nil {
		return nil, "", nil, err
	}
	pass, _, err := keys.ResolvePassphrase("", kf.passwordFile, false)
	if err != nil {
		return nil, "", nil, err
	}
	key, err := keys.ECP256.Generate()
	if err != nil {
		return nil, "", nil, err
	}
	csr, err := createCSR(key, name, policy.Names{})
	return key, csr, pass, err
}

// write puts the credential in OUT/NAME.{crt,key}, the key encrypted.
func (kf *operatorKeyFlags) write(name string, key crypto.Signer, pass []byte, issued client.SignResponse) (string, string, error) {
	chain, err := checkIssued(&issued, key.Public())
	if err != nil {
		return "", "", err
	}
	keyPEM, err := keys.EncryptPEM(key, pass)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(kf.out, 0o700); err != nil {
		return "", "", err
	}
	certFile, keyFile := filepath.Join(kf.out, name+".crt"), filepath.Join(kf.out, name+".key")
	if err := keys.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := keys.WriteFile(certFile, encodeChain(chain), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func newAdminAddCommand(s *streams) *cobra.Command {
	var (
		role     string
		provs    []string
		spiffeID string
		subject  string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME --role admin|operator|auditor|viewer (--out DIR --key-password-file FILE | --spiffe-id ID | --subject DN)",
		Short: "Add an operator and write its admin credential",
		Long: `Add operator NAME with a role and write its credential: a key made here,
encrypted with the passphrase in --key-password-file, and a certificate
carrying spiffe://TD/meshpki/admin/NAME, as OUT/NAME.key and OUT/NAME.crt.
The operator uses them with --cert and --key (and --password-file) on every
admin command. An operator-role operator acts only for the provisioners given
with --provisioner. Names are never reused, retired ones included.

Or enroll a certificate another CA issues, which the server trusts for
operators (meshpki server --operator-ca FILE): --spiffe-id names the SPIFFE ID
it carries, --subject its subject DN as "CN=alice,O=Corp". Nothing is written
then; that CA issues and revokes the operator's certificates, and retiring
the operator refuses them here.
` + adminConnectHelp,
		Example: `  meshpki admin add alice --role operator --provisioner web,acme --out ./alice --key-password-file alice.pass --data /var/lib/meshpki
  meshpki provisioner list --cert alice/alice.crt --key alice/alice.key --password-file alice.pass --ca-url https://ca:8443 --root root.crt
  meshpki admin add carol --role auditor --spiffe-id spiffe://corp.example/ops/carol --data /var/lib/meshpki`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	kf := addOperatorKeyFlags(cmd)
	cmd.Flags().StringVar(&role, "role", "", "`ROLE`: admin, operator, auditor or viewer")
	cmd.Flags().StringSliceVar(&provs, "provisioner", nil, "operator role: the provisioner `NAMES` it acts for")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "enroll the certificates of another CA carrying this SPIFFE `ID` (no credential is written)")
	cmd.Flags().StringVar(&subject, "subject", "", "enroll the certificates of another CA with this subject `DN`, e.g. \"CN=alice,O=Corp\"")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the operator and its credential's serial as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if role == "" {
			return usageError{errors.New("--role is required: admin, operator, auditor or viewer")}
		}
		if spiffeID != "" || subject != "" {
			if spiffeID != "" && subject != "" || kf.out != "" {
				return usageError{errors.New("give one of --spiffe-id, --subject, or --out for a credential from this CA")}
			}
			identity := spiffeID
			if subject != "" {
				identity = "subject:" + subject
			}
			got, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.OperatorCredential, error) {
				return cl.AddOperator(ctx, client.OperatorRequest{Name: name, Role: store.Role(role), Provisioners: trimAll(provs), Identity: identity})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(s.out, got.Operator)
			}
			_, err = fmt.Fprintf(s.out, "enrolled operator %s (%s): certificates from the operator CA with %s\n", name, got.Operator.Role, identity)
			return err
		}
		key, csr, pass, err := kf.newKey(name)
		if err != nil {
			return err
		}
		got, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.OperatorCredential, error) {
			return cl.AddOperator(ctx, client.OperatorRequest{Name: name, Role: store.Role(role), Provisioners: trimAll(provs), CSR: csr, TTL: policy.Duration(kf.ttl)})
		})
		if err != nil {
			return err
		}
		return writeOperatorCredential(s, kf, name, key, pass, got, asJSON, "added")
	}
	return cmd
}

func newAdminCredentialCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "credential NAME --out DIR --key-password-file FILE",
		Short: "Issue an operator a new credential (a lost key, a new machine)",
		Long: `Issue active operator NAME a new credential, written as OUT/NAME.key
(encrypted) and OUT/NAME.crt. Its earlier credentials stay valid until they
expire; 'meshpki admin revoke NAME' ends them all.
` + adminConnectHelp,
		Example: `  meshpki admin credential alice --out ./alice --key-password-file alice.pass --data /var/lib/meshpki`,
		Args:    positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	kf := addOperatorKeyFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the operator and its credential's serial as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		key, csr, pass, err := kf.newKey(name)
		if err != nil {
			return err
		}
		got, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) (*client.OperatorCredential, error) {
			return cl.IssueOperatorCredential(ctx, name, client.OperatorRequest{CSR: csr, TTL: policy.Duration(kf.ttl)})
		})
		if err != nil {
			return err
		}
		return writeOperatorCredential(s, kf, name, key, pass, got, asJSON, "issued a credential for")
	}
	return cmd
}

func writeOperatorCredential(s *streams, kf *operatorKeyFlags, name string, key crypto.Signer, pass []byte, got *client.OperatorCredential, asJSON bool, verb string) error {
	if got.Certificate == nil {
		return errors.New("the server issued no credential")
	}
	certFile, keyFile, err := kf.write(name, key, pass, *got.Certificate)
	clear(pass)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(s.out, struct {
			Operator client.Operator `json:"operator"`
			Serial   store.Serial    `json:"serial"`
			Cert     string          `json:"cert_file"`
			Key      string          `json:"key_file"`
		}{got.Operator, got.Certificate.Serial, certFile, keyFile})
	}
	_, err = fmt.Fprintf(s.out, "%s operator %s (%s); credential %s and %s (key encrypted), serial %s\n",
		verb, name, got.Operator.Role, certFile, keyFile, got.Certificate.Serial)
	return err
}

func newAdminListCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List operators, their roles and provisioners (admins and auditors)",
		Long:  "List every operator, retired ones included, with its role and the provisioners an operator-role operator acts for.\n" + adminConnectHelp,
		Args:  positionalArgs(),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the operators as JSON")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		ops, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]client.Operator, error) {
			return cl.ListOperators(ctx)
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, ops)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tPROVISIONERS\tCREDENTIAL\tADDED\tSTATUS")
		for _, op := range ops {
			status := "active"
			if op.RetiredAt != nil {
				status = "retired " + agoPhrase(now.Sub(*op.RetiredAt))
			}
			provs := strings.Join(op.Provisioners, ",")
			if provs == "" {
				provs = "-"
			}
			cred := "this CA"
			if op.Identity != "" {
				cred = op.Identity
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", op.Name, op.Role, provs, cred, agoPhrase(now.Sub(op.CreatedAt)), status)
		}
		return tw.Flush()
	}
	return cmd
}

func newAdminRevokeCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Retire an operator: its credentials are refused and revoked",
		Long: `Retire operator NAME: from now on every credential it holds is refused, and
each is revoked (reason cessationOfOperation). The last active admin cannot be
retired. Retiring "bootstrap" removes DIR/secrets/admin.{crt,key}, and the
server writes them no more: admin commands then need an operator's --cert and
--key.
` + adminConnectHelp,
		Example: `  meshpki admin revoke alice --data /var/lib/meshpki
  meshpki admin revoke bootstrap --cert ops/root2.crt --key ops/root2.key --password-file root2.pass --data /var/lib/meshpki`,
		Args: positionalArgs("NAME"),
	}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the revoked serials as JSON")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		revoked, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]store.Serial, error) {
			return cl.RetireOperator(ctx, args[0])
		})
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(s.out, map[string]any{"retired": args[0], "revoked": revoked})
		}
		noun := "certificates"
		if len(revoked) == 1 {
			noun = "certificate"
		}
		_, err = fmt.Fprintf(s.out, "retired operator %s; revoked %d %s\n", args[0], len(revoked), noun)
		return err
	}
	return cmd
}

package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/server"
)

// Environment variables that stand in for --ca-url and --root.
const (
	envCAURL = "MESHPKI_CA_URL"
	envRoot  = "MESHPKI_ROOT"
)

// credentialMode says which TLS client certificate a command presents.
type credentialMode int

const (
	// credentialNone: no client certificate (cert issue, authorised by a token).
	credentialNone credentialMode = iota
	// credentialHolder: the holder's --cert and --key, which are required
	// (cert renew).
	credentialHolder
	// credentialAdmin: --cert and --key if given, else the admin credential in
	// DIR/secrets with --data; one of them is required.
	credentialAdmin
)

// connectFlags are the flags that say which CA a command talks to and with
// which credential. Flags win over the environment, which wins over --data.
type connectFlags struct {
	mode         credentialMode
	dataDir      string
	caURL        string
	rootFile     string
	certFile     string
	keyFile      string
	passwordFile string
}

// addConnectFlags adds the connection flags for mode to cmd.
func addConnectFlags(cmd *cobra.Command, mode credentialMode) *connectFlags {
	cf := &connectFlags{mode: mode}
	f := cmd.Flags()
	dataHelp := "the CA's data `DIR`, on the CA host: gives the URL and the root"
	if mode == credentialAdmin {
		dataHelp = "the CA's data `DIR`, on the CA host: gives the URL, the root and the admin credential"
	}
	f.StringVar(&cf.dataDir, "data", "", dataHelp)
	f.StringVar(&cf.caURL, "ca-url", "", "the CA's `URL`, e.g. https://ca.example.internal:8443 (env "+envCAURL+")")
	f.StringVar(&cf.rootFile, "root", "", "PEM `FILE` of the root certificate to trust (env "+envRoot+")")
	switch mode {
	case credentialHolder:
		f.StringVar(&cf.certFile, "cert", "", "the certificate `FILE` (PEM, leaf first)")
		f.StringVar(&cf.keyFile, "key", "", "its private key `FILE` (PEM)")
	case credentialAdmin:
		f.StringVar(&cf.certFile, "cert", "", "client certificate `FILE` to present, PEM (default with --data: DIR/"+server.AdminCertFile+")")
		f.StringVar(&cf.keyFile, "key", "", "private key `FILE` of --cert (PEM, plain or encrypted)")
		f.StringVar(&cf.passwordFile, "password-file", "", "`FILE` holding the passphrase of an encrypted key (else env "+keys.PassphraseEnv+", else DIR/secrets/password)")
	}
	return cf
}

// connectHelp is appended to the Long text of commands with connect flags.
const connectHelp = `
Which CA: --ca-url and --root (or MESHPKI_CA_URL and MESHPKI_ROOT); on the CA
host --data DIR is enough: the URL of the running server is read from
DIR/server.json and the root from DIR/ca/root.crt.`

// adminConnectHelp is connectHelp for commands that need an admin.
const adminConnectHelp = connectHelp + `

Credential: with --data, the admin certificate DIR/secrets/admin.crt and its
key, decrypted with the CA passphrase (--password-file, else MESHPKI_PASSWORD,
else DIR/secrets/password). Elsewhere pass an admin's --cert and --key.`

// target is where a command connects and what it presents, once resolved.
type target struct {
	url      string
	rootFile string
	rootsPEM []byte
	cred     *tls.Certificate // nil for credentialNone
}

// client resolves the flags and returns a client for the CA.
func (cf *connectFlags) client() (*client.Client, error) {
	t, err := cf.resolve()
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{URL: t.url, RootsPEM: t.rootsPEM, Certificate: t.cred})
}

// resolve finds the URL, roots and credential the flags describe.
func (cf *connectFlags) resolve() (*target, error) {
	if (cf.certFile == "") != (cf.keyFile == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	if cf.mode == credentialHolder && cf.certFile == "" {
		return nil, usageError{errors.New("--cert FILE and --key FILE are required")}
	}
	if cf.mode == credentialAdmin && cf.certFile == "" && cf.dataDir == "" {
		return nil, usageError{errors.New("no credential: pass --data DIR on the CA host, or --cert FILE --key FILE of an admin (or of the certificate's holder, to revoke it)")}
	}
	t := &target{}
	var err error
	if t.url, err = cf.resolveURL(); err != nil {
		return nil, err
	}
	if t.rootFile, t.rootsPEM, err = cf.resolveRoots(); err != nil {
		return nil, err
	}
	if cf.mode == credentialNone {
		return t, nil
	}
	certFile, keyFile := cf.certFile, cf.keyFile
	if certFile == "" {
		certFile = filepath.Join(cf.dataDir, filepath.FromSlash(server.AdminCertFile))
		keyFile = filepath.Join(cf.dataDir, filepath.FromSlash(server.AdminKeyFile))
	}
	if t.cred, err = loadCredential(certFile, keyFile, cf.dataDir, cf.passwordFile); err != nil {
		return nil, err
	}
	return t, nil
}

func (cf *connectFlags) resolveURL() (string, error) {
	if cf.caURL != "" {
		return cf.caURL, nil
	}
	if v := os.Getenv(envCAURL); v != "" {
		return v, nil
	}
	if cf.dataDir == "" {
		return "", usageError{errors.New("which CA? pass --ca-url URL (or set " + envCAURL + "), or --data DIR on the CA host")}
	}
	stateFile := filepath.Join(cf.dataDir, server.StateFile)
	data, err := os.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no running server recorded in %s: start 'meshpki server --data %s' or pass --ca-url", stateFile, cf.dataDir)
	}
	if err != nil {
		return "", fmt.Errorf("read server state: %w", err)
	}
	var state struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(data, &state); err != nil {
		return "", fmt.Errorf("%s is not valid JSON: %w", stateFile, err)
	}
	if state.URL == "" {
		return "", fmt.Errorf("%s records no URL: start 'meshpki server --data %s' or pass --ca-url", stateFile, cf.dataDir)
	}
	return state.URL, nil
}

func (cf *connectFlags) resolveRoots() (string, []byte, error) {
	file := cf.rootFile
	if file == "" {
		file = os.Getenv(envRoot)
	}
	if file == "" && cf.dataDir != "" {
		file = filepath.Join(cf.dataDir, filepath.FromSlash(server.RootCertFile))
	}
	if file == "" {
		return "", nil, usageError{errors.New("which root to trust? pass --root FILE (or set " + envRoot + "), or --data DIR on the CA host")}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", nil, fmt.Errorf("read root certificate: %w", err)
	}
	if _, err := client.ParseCertificatesPEM(data); err != nil {
		return "", nil, fmt.Errorf("root certificate %s: %w", file, err)
	}
	return file, data, nil
}

// loadCredential reads a certificate and its key. The passphrase is looked
// up only when the key is encrypted. A pair replaced while it is read (the
// server renews its admin credential: the key is written, then the
// certificate) is read again, a few times over half a second, rather than
// refused as a key that does not belong to its certificate.
func loadCredential(certFile, keyFile, dataDir, passwordFile string) (*tls.Certificate, error) {
	for attempt := 0; ; attempt++ {
		cred, err := readCredential(certFile, keyFile, dataDir, passwordFile)
		if !errors.Is(err, client.ErrKeyMismatch) || attempt == 10 {
			return cred, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readCredential(certFile, keyFile, dataDir, passwordFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := readKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	defer clear(keyPEM)
	var passphrase []byte
	if passwordFile != "" || keys.IsEncryptedPEM(keyPEM) {
		passphrase, _, err = keys.ResolvePassphrase(dataDir, passwordFile, false)
		if err != nil {
			return nil, fmt.Errorf("key %s is encrypted: %w", keyFile, err)
		}
	}
	cred, err := client.ParseCredentials(certPEM, keyPEM, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return cred, nil
}

// readKeyFile reads a private key file, bounding its size.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	return data, nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// groupCommand returns a command that only holds subcommands: run bare it
// prints its help; with an unknown subcommand it is a usage error.
func groupCommand(use, short, long, example string, subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())}
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(subcommands...)
	return cmd
}

// positionalArgs requires exactly the named positional arguments.
func positionalArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageError{fmt.Errorf("missing %s (see '%s --help')", strings.Join(names[len(args):], " "), c.CommandPath())}
		case len(args) > len(names):
			return usageError{fmt.Errorf("unexpected argument %q (see '%s --help')", args[len(names)], c.CommandPath())}
		}
		return nil
	}
}

// requireFlags fails with a usage error naming the first of the flags that
// was not given.
func requireFlags(c *cobra.Command, names ...string) error {
	for _, name := range names {
		if !c.Flags().Changed(name) {
			return usageError{fmt.Errorf("--%s is required (see '%s --help')", name, c.CommandPath())}
		}
	}
	return nil
}

// do connects to the CA the flags name and runs fn with the client, which
// it closes afterwards.
func (cf *connectFlags) do(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	cl, err := cf.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(ctx, cl)
}

// fetch is do for a request that returns a value.
func fetch[T any](ctx context.Context, cf *connectFlags, fn func(context.Context, *client.Client) (T, error)) (T, error) {
	var v T
	err := cf.do(ctx, func(ctx context.Context, cl *client.Client) error {
		var err error
		v, err = fn(ctx, cl)
		return err
	})
	return v, err
}

// show prints v as JSON when asJSON is set, and otherwise runs text, which
// prints it for people.
func show(w io.Writer, asJSON bool, v any, text func() error) error {
	if asJSON {
		return writeJSON(w, v)
	}
	return text()
}

// removeCommand is a command that does one thing to a named object through
// a client method (removes it, tests it) and says so: "<done> NAME".
func nameCommand(s *streams, use, short, long, done string, method func(*client.Client, context.Context, string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long + "\n" + adminConnectHelp, Args: positionalArgs(strings.Fields(use)[1])}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := conn.do(c.Context(), func(ctx context.Context, cl *client.Client) error { return method(cl, ctx, args[0]) }); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.out, "%s %s\n", done, args[0])
		return err
	}
	return cmd
}

// listCommand is "list [--json]" of one kind of named object: JSON as
// {"KEY": [...]}, else a table (header, then a row per item), or the empty
// message on stderr when there is none.
func listCommand[T any](s *streams, key, short, long, empty, header string, list func(*client.Client, context.Context) ([]T, error), row func(T) string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "list [--json]", Short: short, Long: long + "\n" + adminConnectHelp, Args: positionalArgs()}
	conn := addConnectFlags(cmd, credentialAdmin)
	cmd.Flags().BoolVar(&asJSON, "json", false, fmt.Sprintf(`print {"%s": [...]} as JSON`, key))
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		items, err := fetch(c.Context(), conn, func(ctx context.Context, cl *client.Client) ([]T, error) { return list(cl, ctx) })
		if err != nil {
			return err
		}
		if items == nil {
			items = []T{}
		}
		return show(s.out, asJSON, map[string]any{key: items}, func() error {
			if len(items) == 0 {
				fmt.Fprintln(s.err, empty)
				return nil
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, header)
			for _, it := range items {
				fmt.Fprintln(tw, row(it))
			}
			return tw.Flush()
		})
	}
	return cmd
}

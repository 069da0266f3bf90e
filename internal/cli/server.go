package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/server"
)

// StoreEnv is the environment variable the server, and every command that
// opens the store itself (ca init and rotations for their audit records,
// audit verify), read the store URL from when --store is not given.
const StoreEnv = "MESHPKI_STORE"

// storeURLOrEnv is the store URL a command uses: its --store, else
// MESHPKI_STORE, else "" (SQLite in DIR).
func storeURLOrEnv(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(StoreEnv)
}

func init() { register(newServerCommand) }

func newServerCommand(s *streams) *cobra.Command {
	var (
		opts        server.Options
		ips         []string
		keyType     string
		logLevel    string
		x509popCA   string
		redirects   []string
		allowEgress []string
		logFormat   string
		configFile  string
		printCfg    bool
		operatorCA  string
	)
	cmd := &cobra.Command{
		Use:   "server --data DIR [--listen 127.0.0.1:8443] [--store URL]",
		Short: "Run the CA server: JSON API, roots, metrics and health over HTTPS",
		Long: `Run the CA server. An empty or missing --data directory is initialised first
(a root and an intermediate, as 'meshpki ca init' would), then the server
prints the root fingerprint, its URL and where the first admin credential is.

The store is SQLite in DIR/meshpki.db unless --store names PostgreSQL, e.g.
--store postgres://user@db.internal:5432/meshpki. Several servers may share one
PostgreSQL store and one copy of DIR/ca; give them the same --url. A store URL
holding a password is better given in the environment variable MESHPKI_STORE,
read when --store is not set, than on the command line, where ps shows it.

The CA passphrase comes from --password-file, else MESHPKI_PASSWORD, else
DIR/secrets/password (created with a warning on first start if none is given).

Settings can live in a YAML file, --config FILE, whose keys are these flags'
names without the dashes (listen: 0.0.0.0:8443, dns: [ca.internal]); flags
on the command line win over it, and an unknown key is an error naming the
file and line. --print-config prints the effective settings with each
value's source (flag, FILE:LINE, env, default) and exits. Provisioners,
entries, alert channels and the like are not settings: they live in the store
(docs/CONFIG.md).`,
		Example: `  meshpki server --data ./ca-data
  meshpki server --config /etc/meshpki/server.yaml --print-config
  MESHPKI_PASSWORD=… meshpki server --data /var/lib/meshpki --listen 0.0.0.0:8443 --url https://ca.internal:8443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sources, err := applyConfigFile(cmd, configFile)
			if err != nil {
				return usageError{err}
			}
			if printCfg {
				return printConfig(s.out, cmd, sources, map[string]string{"store": StoreEnv})
			}
			if opts.DataDir == "" {
				return usageError{fmt.Errorf("--data DIR is required (a flag, or data: in --config)")}
			}
			opts.StoreURL = storeURLOrEnv(opts.StoreURL)
			for _, v := range ips {
				ip := net.ParseIP(v)
				if ip == nil {
					return usageError{fmt.Errorf("--ip %q is not an IP address", v)}
				}
				opts.IPs = append(opts.IPs, ip)
			}
			for _, v := range redirects {
				p, err := netip.ParsePrefix(v)
				if err != nil {
					return usageError{fmt.Errorf("--acme-allow-redirect-to %q is not a CIDR such as 10.0.0.0/8", v)}
				}
				opts.ACMEValidation.AllowRedirectTo = append(opts.ACMEValidation.AllowRedirectTo, p.Masked())
			}
			allow, err := netguard.ParsePrefixes(allowEgress)
			if err != nil {
				return usageError{fmt.Errorf("--allow-egress: %w", err)}
			}
			opts.AllowEgress = allow
			kt, err := keys.ParseKeyType(keyType)
			if err != nil {
				return usageError{err}
			}
			opts.Init.KeyType = kt
			logger, err := newLogger(s.err, logLevel, logFormat)
			if err != nil {
				return err
			}
			opts.Logger = logger
			opts.Out = s.out
			if x509popCA != "" {
				data, err := os.ReadFile(x509popCA)
				if err != nil {
					return fmt.Errorf("--x509pop-ca: %w", err)
				}
				opts.X509PoPRoots = x509.NewCertPool()
				if !opts.X509PoPRoots.AppendCertsFromPEM(data) {
					return usageError{fmt.Errorf("--x509pop-ca %s holds no PEM certificate", x509popCA)}
				}
			}
			if operatorCA != "" {
				data, err := os.ReadFile(operatorCA)
				if err != nil {
					return fmt.Errorf("--operator-ca: %w", err)
				}
				if opts.OperatorCAs, err = client.ParseCertificatesPEM(data); err != nil {
					return usageError{fmt.Errorf("--operator-ca %s: %w", operatorCA, err)}
				}
			}
			server.TuneGC()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return server.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML `FILE` of settings: each key a flag name without dashes; flags given win")
	f.BoolVar(&printCfg, "print-config", false, "print the effective configuration, each value with its source, and exit")
	f.StringVar(&opts.DataDir, "data", "", "data directory (initialised when empty)")
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	f.StringVar(&opts.StoreURL, "store", "", "store URL: empty for SQLite in DIR, or postgres://…")
	f.StringVar(&opts.PublicURL, "url", "", "public URL clients use (default https://LISTEN); tokens are bound to it")
	f.StringSliceVar(&opts.DNSNames, "dns", nil, "extra DNS names for the server's TLS certificate")
	f.StringSliceVar(&ips, "ip", nil, "extra IP addresses for the server's TLS certificate")
	f.StringVar(&opts.PasswordFile, "password-file", "", "file holding the CA passphrase")
	f.StringVar(&opts.Init.Name, "name", "meshpki", "CA name, when initialising")
	f.StringVar(&opts.Init.TrustDomain, "trust-domain", "meshpki.internal", "SPIFFE trust domain, when initialising")
	f.StringVar(&keyType, "key-type", string(keys.ECP256), "CA key type, when initialising")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text, or json (one object per line)")
	f.StringVar(&opts.HTTPListen, "http-listen", "", "plain-HTTP `ADDR` for what is public and signed (/crl…, /ocsp, /roots.pem, /intermediates…) and nothing else")
	f.StringVar(&opts.PublicHTTPURL, "public-http-url", "", "plain-HTTP `URL` relying parties reach --http-listen by, put in certificates' CRL and OCSP pointers (default http://HTTP-LISTEN)")
	durationVar(f, &opts.CRLValidity, "crl-validity", revocation.DefaultCRLValidity, "a CRL's nextUpdate after its thisUpdate (rebuilt when a third has passed, and within a second of a revocation)")
	durationVar(f, &opts.PointerMinLifetime, "revocation-pointers-above", revocation.DefaultPointerMinLifetime, "certificates living longer than this carry a CRL Distribution Point and AIA (OCSP, caIssuers)")
	f.IntVar(&opts.CRLShardEntries, "crl-shard-entries", revocation.DefaultShardEntries, "revoked certificates per CRL shard before new certificates are spread over twice as many shards")
	f.IntVar(&opts.ACMEValidation.HTTPPort, "acme-http-port", 80, "port ACME http-01 challenges are fetched from")
	f.IntVar(&opts.ACMEValidation.TLSPort, "acme-tls-port", 443, "port ACME tls-alpn-01 challenges are checked on")
	f.StringVar(&opts.ACMEValidation.Resolver, "acme-resolver", "", "`HOST:PORT` of the DNS server ACME validation asks (default: the system's)")
	durationVar(f, &opts.ACMEValidation.Timeout, "acme-validation-timeout", 10*time.Second, "time limit of one ACME challenge validation")
	f.StringSliceVar(&allowEgress, "scan-allow", nil, "`CIDR` scheduled scans may reach although it is loopback or link-local, e.g. 127.0.0.0/8 (repeatable)")
	f.StringSliceVar(&redirects, "acme-allow-redirect-to", nil, "`CIDR` an http-01 redirect may lead into although it is loopback or private (repeatable; link-local never)")
	f.StringVar(&x509popCA, "x509pop-ca", "", "PEM `FILE` of CAs whose certificates let nodes attest with x509pop")
	f.StringVar(&operatorCA, "operator-ca", "", "PEM `FILE` of another CA whose client certificates authenticate operators enrolled by SPIFFE ID or subject (docs/ROLES.md)")
	return cmd
}

// contextOf returns the command's context or a background one.
func contextOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

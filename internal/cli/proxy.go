package cli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/crlset"
	"github.com/meshpki/meshpki/internal/proxy"
)

func init() { register(newProxyCommand) }

func newProxyCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "mTLS for a service without touching its code: inbound and outbound sidecars",
		Long: `A sidecar that gives a service mutual TLS with SPIFFE identities and follows
every rotation. 'proxy inbound' terminates mTLS in front of an app and
forwards plain TCP (or HTTP with --http); 'proxy outbound' takes the app's
plain connections and originates mTLS to a peer. The identity comes from the
agent's Workload API (--workload-api, else SPIFFE_ENDPOINT_SOCKET) or from
--cert/--key/--bundle files, watched and reloaded. docs/MTLS.md walks
through two services, two proxies and one agent.`,
	}
	cmd.AddCommand(newProxyRunCommand(s, proxy.Inbound), newProxyRunCommand(s, proxy.Outbound))
	return cmd
}

func newProxyRunCommand(s *streams, dir proxy.Direction) *cobra.Command {
	var (
		cfg                          proxy.RunConfig
		ids                          []string
		certFile, keyFile, bundle    string
		logLevel, logFormat          string
		handshake, idle, dial, drain = durationValue(proxy.DefaultHandshakeTimeout), durationValue(proxy.DefaultIdleTimeout),
			durationValue(proxy.DefaultDialTimeout), durationValue(proxy.DefaultDrainTimeout)
	)
	cfg.Direction = dir
	idFlag, idHelp := "allow", "who may connect: a SPIFFE ID, spiffe://TD/PATH/* (every ID under the path), spiffe://TD (a trust domain) or dns:NAME (repeatable; required)"
	use := "inbound --listen ADDR --to HOST:PORT|unix:PATH --allow ID..."
	short := "Terminate mTLS in front of an app and forward to it"
	example := `  meshpki proxy inbound --listen :8443 --to 127.0.0.1:8080 --allow spiffe://example.internal/ns/web \
      --workload-api unix:///run/meshpki/agent.sock --admin-listen 127.0.0.1:9102
  meshpki proxy inbound --listen :8443 --to unix:/run/app.sock --http --allow 'spiffe://example.internal/ns/*' \
      --cert svid.pem --key svid.key --bundle bundle.pem`
	if dir == proxy.Outbound {
		idFlag, idHelp = "expect", "whom the server must be: a SPIFFE ID, spiffe://TD/PATH/*, spiffe://TD or dns:NAME (repeatable; required)"
		use = "outbound --listen 127.0.0.1:PORT --to HOST:PORT --expect ID..."
		short = "Take an app's plain connections and originate mTLS to a peer"
		example = `  meshpki proxy outbound --listen 127.0.0.1:9000 --to api.internal:8443 --expect spiffe://example.internal/ns/api \
      --workload-api unix:///run/meshpki/agent.sock`
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

Each connection is logged once it ends (peer identity, bytes each way,
duration, result, and for a refusal its reason: untrusted, expired,
not_allowed, no_certificate, timeout…). TLS 1.3 alone unless --tls12. On
SIGTERM or SIGINT the proxy stops accepting and lets open connections finish
for up to --drain-timeout. --admin-listen serves /healthz, /readyz (an
identity is held, and every --crl fetched once) and /metrics.

--crl URL (repeatable) refuses peers whose certificate, or an intermediate of
their chain, is on that CRL (reason revoked). CRLs are fetched at start and
every --crl-refresh with conditional GETs, and checked in memory: no handshake
waits on the network. Point it at meshpki's /crl/NAME (and /crl/root for
revoked intermediates), over plain HTTP.`,
		Example: example,
		Args:    positionalArgs(),
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "", "`ADDR` to accept connections on (required)")
	f.StringVar(&cfg.To, "to", "", "where connections go: `HOST:PORT`, or unix:PATH for an inbound proxy's app (required)")
	f.StringArrayVar(&ids, idFlag, nil, idHelp)
	f.StringVar(&cfg.WorkloadAPI, "workload-api", "", "the agent's Workload API, e.g. unix:///run/meshpki/agent.sock (default: SPIFFE_ENDPOINT_SOCKET)")
	f.StringVar(&certFile, "cert", "", "SVID `FILE` (PEM, leaf first) instead of the Workload API; watched and reloaded")
	f.StringVar(&keyFile, "key", "", "its private key `FILE` (PEM)")
	f.StringVar(&bundle, "bundle", "", "trust bundle `FILE` (PEM roots)")
	f.StringVar(&cfg.AdminListen, "admin-listen", "", "`ADDR` for /healthz, /readyz and /metrics (off when empty)")
	f.BoolVar(&cfg.TLS.AllowTLS12, "tls12", false, "also accept TLS 1.2 (ECDHE with AEAD suites only)")
	f.StringArrayVar(&cfg.CRLs, "crl", nil, "`URL` of a CRL to refuse revoked peers by, e.g. http://ca.internal:8080/crl/default (repeatable)")
	crlRefresh := durationValue(crlset.DefaultRefresh)
	f.Var(&crlRefresh, "crl-refresh", "how often the --crl URLs are fetched again (`DURATION`)")
	f.Var(&handshake, "handshake-timeout", "`DURATION` a TLS handshake may take")
	f.Var(&idle, "idle-timeout", "close a connection after this `DURATION` with no byte either way (0: never)")
	f.Var(&dial, "dial-timeout", "`DURATION` to connect to --to")
	f.Var(&drain, "drain-timeout", "`DURATION` open connections have to finish at shutdown")
	f.IntVar(&cfg.MaxConns, "max-conns", proxy.DefaultMaxConns, "most connections open at once")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text, or json (one object per line)")
	if dir == proxy.Inbound {
		f.BoolVar(&cfg.HTTP, "http", false, "the app speaks HTTP: set X-Forwarded-Client-Cert (Envoy's format) to the verified client")
	} else {
		f.StringVar(&cfg.ServerName, "server-name", "", "SNI `NAME` to send (default: the host of --to)")
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if cfg.Listen == "" || cfg.To == "" {
			return usageError{errors.New("--listen and --to are required")}
		}
		if len(ids) == 0 {
			return usageError{fmt.Errorf("--%s is required: say who may connect", idFlag)}
		}
		authz, err := proxy.ParseAuthorizer(ids)
		if err != nil {
			return usageError{fmt.Errorf("--%s %w", idFlag, err)}
		}
		cfg.Authz = authz
		switch files := certFile != "" || keyFile != "" || bundle != ""; {
		case files && (certFile == "" || keyFile == "" || bundle == ""):
			return usageError{errors.New("--cert, --key and --bundle go together")}
		case files && cfg.WorkloadAPI != "":
			return usageError{errors.New("give --workload-api or --cert/--key/--bundle, not both")}
		case files:
			cfg.Files = &proxy.Files{Cert: certFile, Key: keyFile, Bundle: bundle}
		}
		if idle < 0 || handshake <= 0 || dial <= 0 || drain < 0 {
			return usageError{errors.New("timeouts must be positive (--idle-timeout 0 means none)")}
		}
		cfg.HandshakeTimeout, cfg.DialTimeout, cfg.DrainTimeout = time.Duration(handshake), time.Duration(dial), time.Duration(drain)
		cfg.CRLRefresh = time.Duration(crlRefresh)
		if crlRefresh <= 0 {
			return usageError{errors.New("--crl-refresh must be positive")}
		}
		for _, u := range cfg.CRLs {
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				return usageError{fmt.Errorf("--crl %q is not an http:// or https:// URL", ca.Clip(u))}
			}
		}
		cfg.IdleTimeout = time.Duration(idle)
		if idle == 0 {
			cfg.IdleTimeout = -1
		}
		if cfg.Logger, err = newLogger(s.err, logLevel, logFormat); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(contextOf(c), os.Interrupt, syscall.SIGTERM)
		defer stop()
		cfg.Ready = func(p, a net.Addr) {
			fmt.Fprintf(s.out, "meshpki proxy %s: listening on %s, to %s\n", dir, p, cfg.To)
			if a != nil {
				fmt.Fprintf(s.out, "admin on http://%s (/healthz, /readyz, /metrics)\n", a)
			}
		}
		return proxy.Run(ctx, cfg)
	}
	return cmd
}

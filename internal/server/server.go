// Package server assembles and runs the CA server: it initialises an empty
// data directory, unlocks the CA keys, opens the store, starts the issuance
// path and the JSON API over HTTPS with a certificate from the CA itself,
// keeps that certificate and the bootstrap admin credential renewed, and
// stops cleanly when its context ends.
package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"golang.org/x/sync/errgroup"

	"github.com/meshpki/meshpki/internal/acme"
	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/api"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/certlint"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/leader"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/notify"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/registration"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
	"github.com/meshpki/meshpki/internal/token"
	"github.com/meshpki/meshpki/internal/web"
)

// Options configure a server. DataDir is required.
type Options struct {
	// DataDir holds the CA (DIR/ca), secrets (DIR/secrets), the SQLite
	// store and server.json. An empty or missing directory is initialised.
	DataDir string
	// Listen is the TCP address to serve HTTPS on (default 127.0.0.1:8443).
	Listen string
	// StoreURL selects the store: "" for SQLite in DataDir, or postgres://….
	StoreURL string
	// PublicURL is the URL clients use to reach this server (default
	// https://<Listen>). Tokens are bound to it: replicas behind one load
	// balancer must share it.
	PublicURL string
	// DNSNames and IPs are extra names for the server's TLS certificate.
	DNSNames []string
	IPs      []net.IP
	// PasswordFile holds the CA passphrase (else MESHPKI_PASSWORD, else
	// DIR/secrets/password).
	PasswordFile string
	// Init is used when DataDir is empty.
	Init ca.InitOptions
	// Out receives the start-up summary (default io.Discard).
	Out io.Writer
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Ready, if set, is called with the bound address once serving.
	Ready func(addr net.Addr)
	// MaintainEvery is how often the server re-reads the CA hierarchy (to
	// pick up intermediates rotated by the CLI) and checks its own
	// credentials for renewal (default 10s).
	MaintainEvery time.Duration
	// ACMEValidation says where ACME challenges are checked: the http-01
	// and tls-alpn-01 ports (default 80 and 443), the DNS resolver (default:
	// the system's) and the per-attempt timeout.
	ACMEValidation validation.Config
	// X509PoPRoots, if set, lets nodes attest with x509pop: a certificate
	// chaining to one of these CAs and a signature proving its key.
	X509PoPRoots *x509.CertPool
	// OperatorCAs, if set, are PEM certificates of other CAs whose client
	// certificates authenticate operators enrolled by their SPIFFE ID or
	// subject ('meshpki admin add --spiffe-id|--subject'), and nothing else.
	OperatorCAs []*x509.Certificate
	// ACMEValidationWait is how long a challenge POST waits for its result
	// (0: acme.DefaultValidationWait).
	ACMEValidationWait time.Duration
	// DrainTimeout bounds how long shutdown waits for in-flight requests
	// (0: DefaultDrainTimeout).
	DrainTimeout time.Duration
	// CheckpointEvery is how often the audit head is signed when it moved
	// (0: DefaultCheckpointEvery); the leader makes a last checkpoint at
	// shutdown.
	CheckpointEvery time.Duration
	// LeaderCheckEvery is how often a replica campaigns for leadership
	// of the singleton jobs and the leader checks its database session
	// (0: leader.DefaultCheckEvery). A replica that wins waits four
	// intervals before it starts the jobs (none on SQLite).
	LeaderCheckEvery time.Duration
	// Timeouts bound each HTTP request (zero fields take the defaults of
	// DefaultTimeouts). Long-lived gRPC streams of the node API are exempt
	// from the read and write timeouts; HTTP/2 pings find dead peers.
	Timeouts Timeouts
	// AllowEgress are networks the server's own requests (scheduled scans,
	// alert webhooks and mail) may reach although they are loopback or
	// link-local (see netguard); none by default.
	AllowEgress []netip.Prefix
	// HTTPListen, if set, is a plain-HTTP address that serves what is
	// public and signed — /ocsp, /roots.pem, /intermediates.pem — and
	// nothing else: relying parties fetch revocation data over http://.
	HTTPListen string
	// PublicHTTPURL is the plain-HTTP URL relying parties reach
	// HTTPListen by, put in certificates' CRL Distribution Point and AIA
	// (default http://<HTTPListen>; without either, certificates carry
	// no pointers).
	PublicHTTPURL string
	// CRLValidity is each CRL's nextUpdate - thisUpdate (default
	// revocation.DefaultCRLValidity); PointerMinLifetime the lifetime
	// above which leaves carry revocation pointers (default
	// revocation.DefaultPointerMinLifetime); CRLShardEntries the entries
	// per CRL shard before new leaves use twice as many shards (default
	// revocation.DefaultShardEntries).
	CRLValidity        time.Duration
	PointerMinLifetime time.Duration
	CRLShardEntries    int
	// ScanTick is how often due scan schedules are looked for (default 5s).
	ScanTick time.Duration
	// AlertEvery is how often alerts are evaluated (default 1m), and
	// AlertResolveAfter their hysteresis (default 10m).
	AlertEvery, AlertResolveAfter time.Duration
	// DeliverTick is how often the alert outbox is looked at (default 2s),
	// and AlertBackoff the wait before each retry (default notify.Backoff).
	DeliverTick  time.Duration
	AlertBackoff func(attempt int) time.Duration
	// ExportedCertificates bounds the x509_cert_* series on /metrics: the
	// certificates in service that expire soonest (default 1000, at most
	// 1000).
	ExportedCertificates int
	// Keystore opens where the server keeps every key it holds, given the
	// data directory and the CA passphrase (nil: keys.OpenKeystore, the
	// files in DIR/ca/keys and the HSMs and KMSs key URIs name). Nothing
	// else in the server knows where keys live.
	Keystore func(dataDir string, passphrase []byte) (keys.Keystore, error)
}

// defaultKeystore is the default Options.Keystore.
func defaultKeystore(dataDir string, passphrase []byte) (keys.Keystore, error) {
	return keys.OpenKeystore(dataDir, passphrase), nil
}

// Timeouts are the HTTPS server's per-request and per-connection limits.
type Timeouts struct {
	ReadHeader time.Duration // reading a request's headers
	Read       time.Duration // reading a whole request
	Write      time.Duration // writing a response (unary requests only)
	Idle       time.Duration // a keep-alive connection with no request
	// Ping is how long a connection may be silent before the server sends
	// an HTTP/2 PING; a peer that does not answer within Ping is dropped.
	Ping time.Duration
}

// DefaultTimeouts are the timeouts the server runs with unless told
// otherwise.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 2 * time.Minute, Ping: 30 * time.Second}

// withDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	return Timeouts{ReadHeader: pick(t.ReadHeader, d.ReadHeader), Read: pick(t.Read, d.Read), Write: pick(t.Write, d.Write), Idle: pick(t.Idle, d.Idle), Ping: pick(t.Ping, d.Ping)}
}

// AEADCipherSuites are the TLS 1.2 suites the server offers: ECDHE with
// AES-GCM or ChaCha20-Poly1305, nothing with CBC or without forward secrecy.
var AEADCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// GCPercent is the garbage collector target the server runs with unless the
// GOGC environment variable says otherwise. Issuance allocates many small,
// short-lived objects and the live heap stays small (tens of MiB), so
// collecting less often buys about a quarter more throughput on 2 cores for
// a few more MiB of memory.
const GCPercent = 400

// TuneGC applies GCPercent unless GOGC is set. It affects the whole process.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// Lifetimes of the server's own credentials.
const (
	ServerCertTTL = 24 * time.Hour
	AdminCertTTL  = 30 * 24 * time.Hour
)

// Files in the data directory that clients on the CA host read.
const (
	StateFile     = "server.json"
	AdminCertFile = "secrets/admin.crt"
	AdminKeyFile  = "secrets/admin.key"
	RootCertFile  = "ca/root.crt"
)

// State is what DIR/server.json records for the CLI on the CA host.
type State struct {
	URL             string    `json:"url"`
	Listen          string    `json:"listen"`
	PID             int       `json:"pid"`
	RootFingerprint string    `json:"root_fingerprint"`
	StartedAt       time.Time `json:"started_at"`
}

// Server is a running CA server.
type Server struct {
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	pass      []byte
	keys      keys.Keystore
	hierarchy *ca.Hierarchy
	store     store.Store
	authority *ca.Authority
	httpSrv   *http.Server
	// provisioners changes provisioners and mints tokens.
	provisioners *provisioner.Service
	// registration changes SPIFFE entries and nodes, mints join tokens.
	registration *registration.Service
	// operators holds who administers the CA, with which role.
	operators *operator.Service
	api       *api.Server
	acme      *acme.Server
	nodes     *nodeapi.Server
	scheduler *monitor.Scheduler
	crls      *revocation.CRLPublisher
	web       *web.Server
	evaluator *notify.Evaluator
	deliverer *notify.Deliverer
	// elector runs the singleton jobs on one replica at a time.
	elector  *leader.Elector
	tlsCert  atomic.Pointer[tls.Certificate]
	listener net.Listener
	// plainListener and plainSrv serve Options.HTTPListen.
	plainListener net.Listener
	plainSrv      *http.Server
	publicURL     string
	lock          *dataDirLock // nil on PostgreSQL, where replicas share DIR
	// initialized says this start created the CA, which the audit log
	// records once the store is open.
	initialized bool
	// checkpointKey signs audit checkpoints; checkpointKID names it.
	checkpointKey crypto.Signer
	checkpointKID string
}

// Run initialises (if needed), starts and serves until ctx ends.
func Run(ctx context.Context, opts Options) error {
	s, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Start prepares everything and binds the listener, but does not serve yet.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("server: a data directory is required (--data DIR)")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:8443"
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	// What lets lint before sign reuse verdicts for P-256 keys (a second of
	// one core, in the background; until then leaves are linted in full).
	certlint.Warm()
	s := &Server{opts: opts, log: opts.Logger, now: opts.Clock}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	ok := false
	if opts.StoreURL == "" {
		lock, err := lockDataDir(opts.DataDir)
		if err != nil {
			return nil, err
		}
		s.lock = lock
		defer func() {
			if !ok {
				lock.release()
			}
		}()
	}
	if err := s.openCA(ctx); err != nil {
		return nil, err
	}
	st, err := sqlstore.Open(ctx, opts.StoreURL, opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: open store: %w", err)
	}
	s.store = st
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	if err := s.applyIssuerRevocations(ctx); err != nil {
		return nil, err
	}
	if s.initialized {
		root := s.hierarchy.Root()
		if err := st.AppendAudit(ctx, audit.Event{Time: s.now(), Type: audit.TypeCAInitialized, Actor: "system:server", Subject: s.hierarchy.Name(), Outcome: "success",
			Detail: map[string]string{"trust_domain": s.hierarchy.TrustDomain(), "root_fingerprint": RootFingerprint(root)}}); err != nil {
			return nil, fmt.Errorf("server: audit the new CA: %w", err)
		}
	}

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s: %w", opts.Listen, err)
	}
	s.listener = ln
	defer func() {
		if !ok {
			ln.Close()
		}
	}()
	if opts.HTTPListen != "" {
		if s.plainListener, err = net.Listen("tcp", opts.HTTPListen); err != nil {
			return nil, fmt.Errorf("server: listen on %s: %w", opts.HTTPListen, err)
		}
		defer func() {
			if !ok {
				s.plainListener.Close()
			}
		}()
	}
	s.publicURL = strings.TrimRight(opts.PublicURL, "/")
	if s.publicURL == "" {
		s.publicURL = "https://" + ln.Addr().String()
	}
	if _, err := url.Parse(s.publicURL); err != nil {
		return nil, fmt.Errorf("server: public URL %q: %w", s.publicURL, err)
	}

	secret, err := keys.LoadMAC(ctx, s.keys, s.hierarchy.TokenKeyRef())
	if err != nil {
		return nil, fmt.Errorf("server: load token key: %w", err)
	}
	keyring, err := token.NewKeyringMAC(secret)
	if err != nil {
		return nil, fmt.Errorf("server: token key: %w", err)
	}
	jwtKey, jwtKID, err := s.loadJWTKey(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.loadCheckpointKey(ctx); err != nil {
		return nil, err
	}
	if err := s.assignGenerations(ctx, st); err != nil {
		return nil, err
	}
	s.elector = &leader.Elector{Store: st, Name: LeadershipName, CheckEvery: opts.LeaderCheckEvery, Logger: s.log}
	if opts.StoreURL == "" {
		s.elector.Grace = -1 // SQLite: this process alone serves DIR (server.lock)
	}
	// Pointers name plain-HTTP URLs only (RFC 5280, sections 4.2.1.13
	// and 4.2.2.1; an https CRL needs revocation checking itself): with
	// neither --public-http-url nor --http-listen leaves carry none.
	pointerBase := strings.TrimRight(opts.PublicHTTPURL, "/")
	if u, err := url.Parse(pointerBase); pointerBase != "" && (err != nil || u.Scheme != "http" || u.Host == "") {
		return nil, fmt.Errorf("server: public HTTP URL %q: want http://HOST[:PORT][/PATH]", ca.Clip(pointerBase))
	}
	if pointerBase == "" && s.plainListener != nil {
		pointerBase = "http://" + s.plainListener.Addr().String()
	}
	s.crls = &revocation.CRLPublisher{Hierarchy: s.hierarchy, Store: st, BaseURL: pointerBase, Validity: opts.CRLValidity,
		PointerMinLifetime: opts.PointerMinLifetime, ShardEntries: opts.CRLShardEntries, Leading: s.elector.Leading, Clock: s.now, Logger: s.log}
	// A new term builds what is stale at once rather than at the next poll.
	s.elector.OnChange = func(leading bool) {
		if leading {
			s.crls.Wake()
		}
	}
	reg := prometheus.NewRegistry()
	if err := s.elector.Register(reg); err != nil {
		return nil, err
	}
	provisioners := provisioner.NewCache(st, 0, s.now)
	s.authority, err = ca.New(ca.Config{
		JWTKey:       jwtKey,
		JWTKeyID:     jwtKID,
		Hierarchy:    s.hierarchy,
		Store:        st,
		Keyring:      keyring,
		Provisioners: provisioners,
		Audience:     s.publicURL + "/v1/sign",
		Clock:        s.now,
		Logger:       s.log,
		Pointers:     s.crls,
	})
	if err != nil {
		return nil, err
	}
	revoker := revocation.New(st, s.authority, s.now)
	revoker.UseHierarchy(s.hierarchy)
	revoker.OnIssuerRevoked(s.replaceOwnCredentials)
	revoker.OnRevoked(s.crls.Revoked)
	s.provisioners, err = provisioner.New(provisioner.Config{Store: st, Cache: provisioners, CA: s.authority,
		Keyring: keyring, Audience: s.publicURL + "/v1/sign", Clock: s.now})
	if err != nil {
		return nil, err
	}
	s.acme, err = acme.New(acme.Config{
		Authority:      s.authority,
		Store:          st,
		Revocation:     revoker,
		BaseURL:        s.publicURL,
		Secret:         secret,
		Validation:     opts.ACMEValidation,
		ValidationWait: opts.ACMEValidationWait,
		Registry:       reg,
		Logger:         s.log,
		Clock:          s.now,
	})
	if err != nil {
		return nil, err
	}
	s.registration, err = registration.New(st, s.authority, keyring, s.now)
	if err != nil {
		return nil, err
	}
	s.nodes, err = nodeapi.New(nodeapi.Config{Authority: s.authority, Store: st, Registration: s.registration,
		X509PoPRoots: opts.X509PoPRoots, Secret: secret, Logger: s.log, Clock: s.now})
	if err != nil {
		return nil, err
	}
	// The server's own requests — scans, OCSP and CRL fetches, alerts — go
	// through the one guard.
	egress := netguard.Guard{Allow: opts.AllowEgress}
	revocationClient := &http.Client{Timeout: monitor.DefaultTimeout, Transport: &http.Transport{DialContext: egress.Dialer().DialContext}}
	inventory := &monitor.Inventory{Store: st, Policy: &monitor.Policy{Roots: s.scanRoots(), Lint: true, Now: s.now,
		Revocation: &monitor.Revocation{Client: revocationClient}}}
	ocspResponder := &revocation.OCSPResponder{Hierarchy: s.hierarchy, Store: st, Clock: s.now, Logger: s.log}
	revoker.OnRevoked(ocspResponder.Forget) // with the CRLs' Wake
	s.registration.OnEvicted(func(ctx context.Context, node store.Node, actor string) {
		// An evicted node's SVID is revoked too, so that relying parties
		// (OCSP) learn of it before it expires.
		if _, err := st.GetCertificate(ctx, node.CertSerial); err != nil {
			return // no SVID recorded (or none any more): nothing to revoke
		}
		_, _, err := revoker.Revoke(ctx, revocation.Request{Serial: string(node.CertSerial), Reason: revocation.PrivilegeWithdrawn, Actor: actor})
		var caErr *ca.Error
		if err != nil && !(errors.As(err, &caErr) && caErr.Kind == ca.KindConflict) {
			s.log.Warn("evicted node's SVID not revoked", "node", node.SPIFFEID, "error", err)
		}
	})
	guard := egress
	s.scheduler = &monitor.Scheduler{Store: st, Inventory: inventory, Guard: guard, Tick: opts.ScanTick, Clock: s.now, Logger: s.log}
	alerts, err := s.newAlerting(st, inventory, guard, secret, reg)
	if err != nil {
		return nil, err
	}
	scanMetrics, err := monitor.NewMetrics(reg, inventory, opts.ExportedCertificates, s.now)
	if err != nil {
		return nil, err
	}
	s.scheduler.Ran = func(_ string, results []monitor.Result, err error) {
		scanMetrics.Scanned("schedule", results, err)
		s.evaluator.Wake()
	}
	wakeEvaluation := s.wakeLeader(topicAlerts, s.evaluator.Wake)
	reported := func(results []monitor.Result) {
		scanMetrics.Scanned("report", results, nil)
		wakeEvaluation()
	}
	s.operators = operator.New(operator.Config{Store: st, Authority: s.authority, Revoker: revoker, Clock: s.now})
	s.operators.OnRetired(func(name string) {
		if name == operator.Bootstrap {
			s.removeAdminCredential()
		}
	})
	s.web, err = web.New(web.Config{Store: st, Inventory: inventory, Revocation: revoker, Hierarchy: s.hierarchy, Alerts: alerts, Provisioners: s.provisioners,
		CheckpointKey: s.checkpointKey.Public(), BaseURL: s.publicURL, Clock: s.now, Logger: s.log,
		ActiveAdmin: func(ctx context.Context, uri string) error {
			op, err := s.operators.Lookup(ctx, uri)
			if err == nil && op.Role != store.RoleAdmin {
				err = fmt.Errorf("operator %s is no longer an admin", op.Name)
			}
			return err
		}})
	if err != nil {
		return nil, err
	}
	apiSrv, err := api.New(api.Config{Authority: s.authority, Store: st, Revocation: revoker, Provisioners: s.provisioners,
		Registration: s.registration, Operators: s.operators, ACME: s.acme, EntriesChanged: s.nodes.EntriesChanged, NodeEvicted: s.nodes.NodeEvicted,
		Inventory: inventory, Schedules: &monitor.Schedules{Store: st, Clock: s.now}, SchedulesChanged: s.wakeLeader(topicSchedules, s.scheduler.Wake),
		Alerts: alerts, AlertsChanged: s.wakeLeader(topicAlerts, s.evaluator.Wake), Reported: reported, OCSP: ocspResponder, CRLs: s.crls, UILogins: s.web,
		Registry: reg, Logger: s.log, Clock: s.now})
	if err != nil {
		return nil, err
	}
	s.api = apiSrv
	st.ObserveCommits(apiSrv.Metrics().ObserveBatch)
	ok = true
	return s, nil
}

// newAlerting builds alert evaluation and delivery, and returns the
// service the API changes channels and rules through. Channel secrets are
// sealed with a key derived from the token secret, which replicas share.
func (s *Server) newAlerting(st store.Store, inventory *monitor.Inventory, guard netguard.Guard, secret keys.MAC, reg *prometheus.Registry) (*notify.Service, error) {
	sealer, err := keys.NewSealer(secret, "meshpki alert channel seal v1")
	if err != nil {
		return nil, err
	}
	metrics, err := notify.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	sender := &notify.Sender{Guard: guard, Roots: s.scanRoots(), ExternalURL: s.publicURL}
	s.evaluator = &notify.Evaluator{Store: st, Inventory: inventory, CA: s.caCertificates, ResolveAfter: s.opts.AlertResolveAfter,
		Every: s.opts.AlertEvery, Clock: s.now, Logger: s.log, Metrics: metrics}
	s.deliverer = &notify.Deliverer{Store: st, Sender: sender, Sealer: sealer, Tick: s.opts.DeliverTick, Backoff: s.opts.AlertBackoff,
		Clock: s.now, Logger: s.log, Metrics: metrics}
	s.evaluator.Queued = s.deliverer.Wake
	return &notify.Service{Store: st, Sealer: sealer, Sender: sender, Clock: s.now}, nil
}

// assignGenerations records, for certificates issued before the store
// recorded generations, which generation of their intermediate signed
// them (by the authority key identifier), so that they land on the right
// CRL. After the first start there is nothing to do.
func (s *Server) assignGenerations(ctx context.Context, st store.Store) error {
	issuers := s.hierarchy.Issuers()
	n, err := st.AssignIssuerGenerations(ctx, func(issuer string, der []byte) int {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return -1
		}
		for _, iss := range issuers {
			if iss.Name == issuer && bytes.Equal(c.AuthorityKeyId, iss.Cert.SubjectKeyId) {
				return iss.Generation
			}
		}
		return -1
	})
	if err != nil {
		return fmt.Errorf("server: record certificates' issuer generations: %w", err)
	}
	if n > 0 {
		s.log.Info("recorded the issuer generation of certificates issued before generations were recorded", "certificates", n)
	}
	return nil
}

// caCertificates are what the built-in alert rule watches: the root and
// the newest generation of each intermediate.
func (s *Server) caCertificates() []*x509.Certificate {
	out := []*x509.Certificate{s.hierarchy.Root()}
	seen := map[string]bool{}
	for _, is := range s.hierarchy.Issuers() { // newest first
		if !seen[is.Name] {
			seen[is.Name] = true
			out = append(out, is.Cert)
		}
	}
	return out
}

// scanRoots are the roots scanned chains are checked against: the
// system's and this CA's.
func (s *Server) scanRoots() *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(s.hierarchy.Root())
	return pool
}

// openCA initialises an empty data directory, then unlocks and loads the CA.
func (s *Server) openCA(ctx context.Context) error {
	dir := s.opts.DataDir
	if !ca.Initialized(dir) {
		pass, generated, err := keys.ResolvePassphrase(dir, s.opts.PasswordFile, true)
		if err != nil {
			return err
		}
		if generated != "" {
			fmt.Fprintf(s.opts.Out, "WARNING: no CA passphrase was given, so a random one was written to %s.\n"+
				"         That is fine for development; in production pass --password-file or MESHPKI_PASSWORD\n"+
				"         and keep the passphrase away from the data directory.\n", generated)
		}
		ks, err := s.openKeystore(pass)
		if err != nil {
			return err
		}
		h, err := ca.Init(ctx, dir, s.opts.Init, ks)
		if err != nil {
			return fmt.Errorf("server: initialise %s: %w", dir, err)
		}
		fmt.Fprintf(s.opts.Out, "Initialised a new CA %q (trust domain %s) in %s\n", h.Name(), h.TrustDomain(), dir)
		s.initialized = true
	}
	pass, _, err := keys.ResolvePassphrase(dir, s.opts.PasswordFile, false)
	if err != nil {
		return err
	}
	s.pass = pass
	if s.keys, err = s.openKeystore(pass); err != nil {
		return err
	}
	h, err := ca.LoadWithClock(ctx, dir, s.keys, s.now)
	if err != nil {
		return fmt.Errorf("server: load CA from %s: %w", dir, err)
	}
	s.hierarchy = h
	return placeServerKeys(h, s.keys)
}

// PrepareServerKeys creates the keys the server makes for itself — the
// JWT-SVID and audit checkpoint keys — where ca.json places them, unless
// they exist, and publishes the checkpoint public key in DIR. 'ca init'
// calls it, so that a data directory copied to several replicas carries
// one set of these keys (a server started on a directory without them
// creates them itself).
func PrepareServerKeys(ctx context.Context, dataDir string, h *ca.Hierarchy, ks keys.Keystore) error {
	if err := placeServerKeys(h, ks); err != nil {
		return err
	}
	if _, _, err := loadServerKey(ctx, ks, jwtKeyName, "JWT-SVID key"); err != nil {
		return err
	}
	_, _, err := loadCheckpointKey(ctx, dataDir, ks)
	return err
}

// placeServerKeys tells the keystore where ca.json keeps the server's own
// keys: --jwt-svid-key-uri for the JWT-SVID key, ahead of --server-key-uri
// for both; encrypted files in DIR/ca/keys otherwise.
func placeServerKeys(h *ca.Hierarchy, ks keys.Keystore) error {
	placer, canPlace := ks.(interface{ Place(name, uri string) })
	if jwt := h.JWTSVIDKeyURI(); jwt != "" {
		if !canPlace {
			return fmt.Errorf("server: ca.json keeps the JWT-SVID key at %s, which this keystore cannot reach", keys.Redact(jwt))
		}
		defer placer.Place(jwtKeyName, jwt) // after the ServerKeys placements below
	}
	if base := h.ServerKeysURI(); base != "" {
		if !canPlace {
			return fmt.Errorf("server: ca.json keeps the server's keys at %s, which this keystore cannot reach", keys.Redact(base))
		}
		for _, name := range []string{jwtKeyName, checkpointKeyName} {
			uri, err := keys.SuccessorURI(base, name)
			if err != nil {
				return fmt.Errorf("server: where to keep the %s key: %w", name, err)
			}
			if uri != "" {
				placer.Place(name, uri)
			}
		}
	}
	return nil
}

// Authority returns the issuance path (for tests and benchmarks).
func (s *Server) Authority() *ca.Authority { return s.authority }

// Provisioners returns the service that changes provisioners and mints
// tokens.
func (s *Server) Provisioners() *provisioner.Service { return s.provisioners }

// Operators returns who administers the CA, with which role.
func (s *Server) Operators() *operator.Service { return s.operators }

// Registration returns the service that changes SPIFFE registration
// entries and nodes and mints join tokens.
func (s *Server) Registration() *registration.Service { return s.registration }

// Leading reports whether this replica runs the singleton jobs now.
func (s *Server) Leading() bool { return s.elector.Leading() }

// Store returns the server's store.
func (s *Server) Store() store.Store { return s.store }

// Addr returns the bound listen address.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// PlainAddr returns the bound plain-HTTP address, or nil without one.
func (s *Server) PlainAddr() net.Addr {
	if s.plainListener == nil {
		return nil
	}
	return s.plainListener.Addr()
}

// URL returns the server's public URL.
func (s *Server) URL() string { return s.publicURL }

// Serve runs the issuance loop, issues the server's own certificate and the
// admin credential, and serves HTTPS until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	defer s.lock.release()
	defer s.store.Close()
	if c, ok := s.keys.(io.Closer); ok {
		defer c.Close() // HSM sessions, KMS clients
	}
	outer := ctx
	// Every long-running part runs in one task group: the issuance path's
	// refusal summaries, ACME validation, the node API's sync hub, maintenance and
	// the HTTPS server. One that fails, or stops before it was asked to,
	// stops the whole server with its error. They stop in order: sync
	// streams first (agents move to another replica), then the HTTPS
	// server drains, and the issuance path last, so that refusals counted
	// while draining are still summarised.
	var tasks errgroup.Group
	failed := make(chan error, 1)
	run := func(name string, ctx context.Context, f func(context.Context) error) {
		tasks.Go(func() error {
			err := f(ctx)
			if ctx.Err() != nil {
				return nil // asked to stop
			}
			if err == nil {
				err = errors.New("stopped by itself")
			}
			err = fmt.Errorf("server: %s: %w", name, err)
			select {
			case failed <- err:
			default:
			}
			return err
		})
	}
	coreCtx, stopCore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCore()
	nodesCtx, stopNodes := context.WithCancel(coreCtx)
	defer stopNodes()
	httpCtx, stopHTTP := context.WithCancel(coreCtx)
	defer stopHTTP()
	run("issuance path", coreCtx, s.authority.Run)
	run("ACME validation", coreCtx, s.acme.Run)
	run("node API", nodesCtx, s.nodes.Run)
	// CRLs are served by every replica and built by the leader.
	run("CRL publisher", coreCtx, s.crls.Run)
	run("leader election", coreCtx, func(ctx context.Context) error {
		return s.elector.Run(ctx,
			leader.Job{Name: "scan schedules", Run: s.scheduler.Run},
			leader.Job{Name: "alert evaluation", Run: s.evaluator.Run},
			leader.Job{Name: "alert delivery", Run: s.deliverer.Run},
			leader.Job{Name: "audit checkpoints", Run: s.checkpoints},
			leader.Job{Name: "ACME validation recovery", Run: s.acme.RecoverValidations},
			leader.Job{Name: "signals from the replicas", Run: s.watchSignals})
	})

	if err := s.startServing(coreCtx, httpCtx, run); err != nil {
		stopCore()
		_ = tasks.Wait()
		return err
	}
	defer s.removeState()

	select {
	case <-outer.Done():
		s.log.Info("shutting down", "reason", context.Cause(outer).Error(), "drain_timeout", s.drainTimeout())
	case err := <-failed:
		s.log.Error("a part of the server failed; shutting down", "error", err)
	}
	start := time.Now()
	stopNodes()
	stopHTTP()
	shutdownCtx, stop := context.WithTimeout(coreCtx, s.drainTimeout())
	defer stop()
	if s.plainSrv != nil {
		if err := s.plainSrv.Shutdown(shutdownCtx); err != nil {
			_ = s.plainSrv.Close()
		}
	}
	if err := s.httpSrv.Shutdown(shutdownCtx); err != nil {
		s.log.Warn("in-flight requests did not finish in time; closing their connections", "drain_timeout", s.drainTimeout())
		_ = s.httpSrv.Close()
	}
	// The leader signs a last checkpoint once everything has stopped, the
	// refusal summaries of the issuance path included.
	leading := s.elector.Leading()
	stopCore()
	err := tasks.Wait()
	if leading {
		if cerr := s.checkpoint(context.WithoutCancel(ctx)); cerr != nil {
			s.log.Warn("final audit checkpoint failed", "error", cerr)
		}
	}
	s.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	return err
}

// startServing issues the server's own credentials, starts the HTTPS
// server and maintenance in the task group, and announces the server
// (server.json, the banner, Options.Ready).
func (s *Server) startServing(coreCtx, httpCtx context.Context, run func(string, context.Context, func(context.Context) error)) error {
	if err := s.renewServerCert(coreCtx); err != nil {
		s.listener.Close()
		return err
	}
	if err := s.operators.EnsureBootstrap(coreCtx); err != nil {
		s.listener.Close()
		return fmt.Errorf("server: record the bootstrap admin: %w", err)
	}
	adminPath, err := s.ensureAdminCredential(coreCtx)
	if err != nil {
		s.listener.Close()
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.hierarchy.Root())
	for _, c := range s.opts.OperatorCAs {
		roots.AddCert(c)
	}
	timeouts := s.opts.Timeouts.withDefaults()
	s.httpSrv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: timeouts.ReadHeader,
		ReadTimeout:       timeouts.Read,
		WriteTimeout:      timeouts.Write,
		IdleTimeout:       timeouts.Idle,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: timeouts.Ping, PingTimeout: timeouts.Ping},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// TLS 1.2 only with forward-secret AEAD suites (TLS 1.3's
			// are all AEAD and not configurable).
			CipherSuites: AEADCipherSuites,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    roots,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.tlsCert.Load(), nil
			},
		},
	}
	run("HTTPS server", httpCtx, func(context.Context) error {
		if err := s.httpSrv.ServeTLS(s.listener, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if s.plainListener != nil {
		s.plainSrv = &http.Server{
			Handler:           s.api.PublicHandler(),
			ReadHeaderTimeout: timeouts.ReadHeader,
			ReadTimeout:       timeouts.Read,
			WriteTimeout:      timeouts.Write,
			IdleTimeout:       timeouts.Idle,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		run("plain HTTP server", httpCtx, func(context.Context) error {
			if err := s.plainSrv.Serve(s.plainListener); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	// server.json tells the CLI where a live server is: written only now
	// that it serves, removed when it stops.
	if err := s.writeState(); err != nil {
		_ = s.httpSrv.Close()
		return err
	}
	s.printBanner(adminPath)
	if s.opts.Ready != nil {
		s.opts.Ready(s.listener.Addr())
	}
	run("maintenance", coreCtx, func(ctx context.Context) error { s.maintain(ctx); return nil })
	return nil
}

func (s *Server) checkpointEvery() time.Duration {
	if s.opts.CheckpointEvery > 0 {
		return s.opts.CheckpointEvery
	}
	return DefaultCheckpointEvery
}

// drainTimeout bounds how long shutdown waits for in-flight requests.
func (s *Server) drainTimeout() time.Duration {
	if s.opts.DrainTimeout > 0 {
		return s.opts.DrainTimeout
	}
	return DefaultDrainTimeout
}

// LeadershipName is the leadership the replicas elect the runner of the
// singleton jobs by.
const LeadershipName = "singleton-jobs"

// DefaultDrainTimeout is how long a stopping server lets in-flight requests
// finish before closing their connections.
const DefaultDrainTimeout = 10 * time.Second

// maintain renews the server certificate and admin credential, picks up
// intermediates rotated by the CLI, and forgets expired token ids.
func (s *Server) maintain(ctx context.Context) {
	every := s.opts.MaintainEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.hierarchy.Reload(ctx); err != nil {
			s.log.Warn("reload CA hierarchy failed", "error", err)
		}
		if err := s.applyIssuerRevocations(ctx); err != nil {
			s.log.Warn("read the intermediates' revocations failed", "error", err)
		}
		s.replaceOwnCredentials(ctx)
		if now := s.now(); now.Sub(lastPrune) > time.Hour {
			if err := s.store.PruneTokens(ctx, now); err != nil {
				s.log.Warn("prune token ids failed", "error", err)
			}
			if err := s.store.PruneUI(ctx, now); err != nil {
				s.log.Warn("prune dashboard sign-ins and sessions failed", "error", err)
			}
			lastPrune = now
		}
	}
}

// The topics of the signals replicas send the leader (store.Signals).
const (
	topicSchedules = "schedules" // a schedule was changed or asked to run now
	topicAlerts    = "alerts"    // rules changed, or results arrived to evaluate
)

// wakeLeader returns what a change that one of the leader's jobs acts on
// calls: it wakes that job here, if this replica leads, and signals the
// leader through the store, if another does; without the signal the
// leader would see the change at its next poll.
func (s *Server) wakeLeader(topic string, wake func()) func() {
	return func() {
		wake()
		if s.elector.Leading() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.store.Signal(ctx, topic); err != nil {
			s.log.Warn("signal the leader failed; it sees the change at its next poll", "topic", topic, "error", err)
		}
	}
}

// watchSignals wakes the leader's jobs on the other replicas' signals: a
// leader job.
func (s *Server) watchSignals(ctx context.Context) error {
	for {
		err := s.store.Watch(ctx, func(topic string) {
			switch topic {
			case topicSchedules:
				s.scheduler.Wake()
			case topicAlerts:
				s.evaluator.Wake()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("watching the replicas' signals failed; watching again", "error", err)
		if !periodic.Sleep(ctx, time.Second) {
			return nil
		}
	}
}

// applyIssuerRevocations revokes here the intermediate generations the
// store records as revoked — through any replica — that this replica's
// ca.json does not, so that none signs with a revoked generation because
// its copy of DIR/ca is older; the CRLs follow.
func (s *Server) applyIssuerRevocations(ctx context.Context) error {
	rs, err := s.store.IssuerRevocations(ctx)
	if err != nil {
		return fmt.Errorf("server: intermediates' revocations: %w", err)
	}
	applied := s.hierarchy.ApplyRevocations(rs)
	for _, iss := range applied {
		s.log.Warn("the store records this intermediate generation as revoked and ca.json here did not: it signs nothing more here (its replacement arrives with the ca.json that revoked it)",
			"issuer", iss.Name, "generation", iss.Generation, "serial", store.SerialOf(iss.Cert.SerialNumber))
	}
	if len(applied) > 0 && s.crls != nil {
		s.crls.Wake()
	}
	return nil
}

// needsRenewal reports whether two thirds of cert's lifetime have passed.
func needsRenewal(cert *x509.Certificate, now time.Time) bool {
	if cert == nil {
		return true
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotBefore.Add(life * 2 / 3))
}

// renewServerCert issues the server's TLS certificate through the CA's own
// issuance path and swaps it in; handshakes read it without locks.
// replaceOwnCredentials renews the server's TLS certificate and the
// admin credential when they near expiry or are no longer good (revoked,
// or their intermediate generation was).
func (s *Server) replaceOwnCredentials(ctx context.Context) {
	if leaf := s.tlsCert.Load(); leaf != nil {
		rec, err := s.store.GetCertificate(ctx, store.SerialOf(leaf.Leaf.SerialNumber))
		if needsRenewal(leaf.Leaf, s.now()) || err == nil && rec.Status == store.StatusRevoked {
			if err := s.renewServerCert(ctx); err != nil {
				s.log.Error("renew server certificate failed", "error", err)
			}
		}
	}
	if _, err := s.ensureAdminCredential(ctx); err != nil {
		s.log.Error("renew admin credential failed", "error", err)
	}
}

func (s *Server) renewServerCert(ctx context.Context) error {
	key, err := keys.ECP256.Generate()
	if err != nil {
		return err
	}
	names := policy.Names{DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}}
	names.DNS = append(names.DNS, s.opts.DNSNames...)
	names.IPs = append(names.IPs, s.opts.IPs...)
	if host, _, err := net.SplitHostPort(s.listener.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			names.IPs = append(names.IPs, ip)
		}
	}
	if u, err := url.Parse(s.publicURL); err == nil {
		h := u.Hostname()
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsLoopback() {
				names.IPs = append(names.IPs, ip)
			}
		} else if h != "" && h != "localhost" {
			names.DNS = append(names.DNS, strings.ToLower(h))
		}
	}
	names.URIs = []*url.URL{{Scheme: "spiffe", Host: s.hierarchy.TrustDomain(), Path: "/meshpki/server"}}
	is, err := s.authority.IssueInternal(ctx, ca.InternalRequest{Subject: "meshpki server", Names: names, PublicKey: key.Public(), TTL: ServerCertTTL})
	if err != nil {
		return fmt.Errorf("server: issue TLS certificate: %w", err)
	}
	chain := [][]byte{is.Certificate.Raw}
	for _, c := range is.Chain {
		chain = append(chain, c.Raw)
	}
	s.tlsCert.Store(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: is.Certificate})
	s.log.Info("server certificate issued", "serial", is.Serial, "not_after", is.Certificate.NotAfter)
	return nil
}

// ensureAdminCredential writes DIR/secrets/admin.{crt,key} when missing or
// past two thirds of its life, holding DIR/secrets/admin.lock meanwhile.
// The key is encrypted with the CA passphrase.
// Once the bootstrap admin is retired ('meshpki admin revoke bootstrap'),
// the files are removed and never written again; it returns "".
func (s *Server) ensureAdminCredential(ctx context.Context) (string, error) {
	certPath := filepath.Join(s.opts.DataDir, AdminCertFile)
	keyPath := filepath.Join(s.opts.DataDir, AdminKeyFile)
	if _, err := s.operators.Lookup(ctx, s.authority.AdminURIPrefix()+operator.Bootstrap); err != nil {
		var ce *ca.Error
		if errors.As(err, &ce) && ce.Kind == ca.KindForbidden {
			s.removeAdminCredential() // retired on another replica, or before this start
			return "", nil
		}
		return "", err
	}
	release, err := lockAdminCredential(ctx, s.opts.DataDir)
	if err != nil {
		return "", fmt.Errorf("server: lock the admin credential: %w", err)
	}
	defer release()
	// Read under the lock: a replica sharing DIR may have just renewed it.
	if data, err := os.ReadFile(certPath); err == nil {
		if cert, err := firstCert(data); err == nil && !needsRenewal(cert, s.now()) {
			if _, err := s.authority.CheckHolder(ctx, cert); err == nil {
				return certPath, nil
			}
		}
	}
	key, err := keys.ECP256.Generate()
	if err != nil {
		return "", err
	}
	adminURI := s.operators.URI(operator.Bootstrap)
	is, err := s.authority.IssueInternal(ctx, ca.InternalRequest{Subject: "meshpki admin", Names: policy.Names{URIs: []*url.URL{adminURI}}, PublicKey: key.Public(), TTL: AdminCertTTL})
	if err != nil {
		return "", fmt.Errorf("server: issue admin certificate: %w", err)
	}
	keyPEM, err := keys.EncryptPEM(key, s.pass)
	if err != nil {
		return "", err
	}
	if err := keys.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return "", fmt.Errorf("server: write admin key: %w", err)
	}
	if err := keys.WriteFile(certPath, is.PEM(), 0o600); err != nil {
		return "", fmt.Errorf("server: write admin certificate: %w", err)
	}
	s.log.Info("admin credential issued", "serial", is.Serial, "path", certPath)
	return certPath, nil
}

// removeAdminCredential deletes DIR/secrets/admin.{crt,key} once the
// bootstrap admin is retired.
func (s *Server) removeAdminCredential() {
	for _, p := range []string{filepath.Join(s.opts.DataDir, AdminCertFile), filepath.Join(s.opts.DataDir, AdminKeyFile)} {
		if err := os.Remove(p); err == nil {
			s.log.Info("the bootstrap admin is retired: its credential file is removed", "path", p)
		}
	}
}

func firstCert(data []byte) (*x509.Certificate, error) {
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// RootFingerprint is the SHA-256 of the root certificate, hex.
func RootFingerprint(root *x509.Certificate) string {
	sum := sha256.Sum256(root.Raw)
	return hex.EncodeToString(sum[:])
}

func (s *Server) writeState() error {
	st := State{
		URL:             s.publicURL,
		Listen:          s.listener.Addr().String(),
		PID:             os.Getpid(),
		RootFingerprint: RootFingerprint(s.hierarchy.Root()),
		StartedAt:       s.now().UTC(),
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return keys.WriteFile(filepath.Join(s.opts.DataDir, StateFile), append(b, '\n'), 0o600)
}

// removeState deletes server.json if it still names this process (replicas
// on PostgreSQL share the directory, and the newest start wrote it).
func (s *Server) removeState() {
	path := filepath.Join(s.opts.DataDir, StateFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var st State
	if json.Unmarshal(data, &st) == nil && st.PID == os.Getpid() && st.Listen == s.listener.Addr().String() {
		_ = os.Remove(path)
	}
}

func (s *Server) printBanner(adminPath string) {
	storeDesc := "SQLite in " + filepath.Join(s.opts.DataDir, "meshpki.db")
	if s.opts.StoreURL != "" {
		storeDesc = redactURL(s.opts.StoreURL)
	}
	admin := adminPath + " and " + filepath.Join(s.opts.DataDir, AdminKeyFile) + " (key encrypted with the CA passphrase)"
	if adminPath == "" {
		admin = "none: the bootstrap admin is retired (operators use their own, 'meshpki admin add')"
	}
	fmt.Fprintf(s.opts.Out, `meshpki CA %q is serving
  URL:               %s
  root fingerprint:  %s (SHA-256)
  root certificate:  %s (also GET %s/roots.pem)
  admin credential:  %s
  store:             %s
Try: meshpki provisioner add token web --allow-dns '*.example.internal' --data %s
`, s.hierarchy.Name(), s.publicURL, RootFingerprint(s.hierarchy.Root()),
		filepath.Join(s.opts.DataDir, RootCertFile), s.publicURL,
		admin, storeDesc, s.opts.DataDir)
}

// redactURL hides a password in a store URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable store URL)"
	}
	return u.Redacted()
}

// openKeystore opens the server's keystore (Options.Keystore).
func (s *Server) openKeystore(pass []byte) (keys.Keystore, error) {
	open := s.opts.Keystore
	if open == nil {
		open = defaultKeystore
	}
	ks, err := open(s.opts.DataDir, pass)
	if err != nil {
		return nil, fmt.Errorf("server: open keystore: %w", err)
	}
	return ks, nil
}

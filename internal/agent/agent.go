// Package agent owns the node agent: it attests the node to the server once
// (join token) and keeps the node SVID renewed and on disk, follows the
// registration entries that apply to the node over a sync stream, has their
// X.509-SVIDs minted in batches and rotated at half-life, and serves them to
// workloads through the Workload API (internal/workload). It keeps serving
// what it holds while the server is unreachable, reconnecting with jittered
// exponential backoff, and reports how long its workloads stay covered if
// the server vanished now (the outage budget).
package agent

import (
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/buildinfo"
	"github.com/meshpki/meshpki/internal/periodic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/declared"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/manifest"
	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/workload"
)

// Files in the agent's data directory.
const (
	NodeKeyFile  = "node.key" // the node SVID's key, encrypted
	NodeCertFile = "node.crt" // the node SVID chain
	StatusFile   = "status.json"
)

// Config configures an agent.
type Config struct {
	ServerURL   string // https://host:port of the meshpki server
	TrustBundle string // PEM file of the root(s) to trust for the server
	JoinToken   string // used when DataDir holds no valid node SVID
	// X509PoPCert and X509PoPKey, if set, are PEM files of a node
	// certificate (with its intermediates) and its key: the node attests
	// with x509pop when it holds no valid node SVID and has no join token,
	// and again at start whenever its stored node SVID has lapsed.
	X509PoPCert, X509PoPKey string
	Socket                  string // Workload API socket path
	DataDir                 string
	// PasswordFile holds the passphrase that encrypts the node key (else
	// MESHPKI_PASSWORD, else DataDir/secrets/password, generated).
	PasswordFile string
	// MetricsListen, if set, serves Prometheus metrics on this address.
	MetricsListen string
	// Manifests, if set, is a directory of cert-manager Certificate
	// manifests whose certificates the agent keeps issued, written and
	// renewed (package declared; docs/MANIFESTS.md).
	Manifests string
	// CertRoots are the directories declared certificates may be written
	// in (default /var/lib/meshpki/certs).
	CertRoots []string
	// ACMEHTTP01 is where ACMEIssuer manifests answer http-01 challenges
	// (default ":80").
	ACMEHTTP01 string
	Logger     *slog.Logger
	// Ready, if set, is called once the Workload API socket is listening.
	Ready func()
	// Clock returns the current time (default time.Now): rotation at
	// half-life, the outage budget and the validity of what is on disk are
	// judged by it.
	Clock func() time.Time
	// Jitter returns a random duration in [0, max] for the reconnect and
	// retry backoff (default uniform, from math/rand); tests make it fixed.
	Jitter func(max time.Duration) time.Duration
}

// Status is what the agent reports in DataDir/status.json.
type Status struct {
	NodeID    string    `json:"node_spiffe_id"`
	Server    string    `json:"server"`
	Connected bool      `json:"connected"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	// SyncStreams counts the sync streams opened since the agent started:
	// 1 while the first stream lives; each reconnect adds one.
	SyncStreams    int       `json:"sync_streams"`
	Entries        int       `json:"entries"`
	SVIDs          int       `json:"svids"`
	NodeSVIDExpiry time.Time `json:"node_svid_expires_at,omitzero"`
	// OutageBudget is how long every workload stays covered if the server
	// vanished now: until the first SVID it holds expires.
	OutageBudget   time.Duration `json:"outage_budget_ns"`
	OutageBudgetAt time.Time     `json:"covered_until,omitzero"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

type heldSVID struct {
	entry    nodeapi.Entry
	chain    []*x509.Certificate
	key      crypto.Signer
	rotateAt time.Time
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	// jitter draws the random part of each backoff (Config.Jitter).
	jitter func(max time.Duration) time.Duration
	pass   []byte
	roots  *x509.CertPool

	mu        sync.Mutex
	nodeID    string
	nodeCert  *tls.Certificate
	nodeRot   time.Time
	entries   map[string]nodeapi.Entry
	svids     map[string]*heldSVID
	bundle    nodeapi.Bundle
	changed   chan struct{} // closed on the next change of svids or bundle
	connected bool
	lastSync  time.Time
	streams   int // sync streams opened
	client    *nodeapi.Client

	wake    chan struct{} // asks the rotator to look again
	metrics *metrics
	aead    cipher.AEAD // seals the persisted SVID cache; nil when unusable
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New checks the configuration and loads the node SVID if DataDir has one.
func New(cfg Config) (*Agent, error) {
	if cfg.ServerURL == "" || cfg.TrustBundle == "" || cfg.Socket == "" || cfg.DataDir == "" {
		return nil, errors.New("agent: --server, --trust-bundle, --socket and --data are required")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, entries: map[string]nodeapi.Entry{}, svids: map[string]*heldSVID{},
		changed: make(chan struct{}), wake: make(chan struct{}, 1), metrics: newMetrics()}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.now = cfg.Clock
	if a.now == nil {
		a.now = time.Now
	}
	a.jitter = cfg.Jitter
	if a.jitter == nil {
		a.jitter = func(max time.Duration) time.Duration { return time.Duration(mrand.Int64N(int64(max) + 1)) }
	}
	pemData, err := os.ReadFile(cfg.TrustBundle)
	if err != nil {
		return nil, fmt.Errorf("agent: trust bundle: %w", err)
	}
	a.roots = x509.NewCertPool()
	if !a.roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("agent: trust bundle %s holds no PEM certificate", cfg.TrustBundle)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: data directory: %w", err)
	}
	pass, generated, err := keys.ResolvePassphrase(cfg.DataDir, cfg.PasswordFile, true)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if generated != "" {
		a.log.Warn("no passphrase given: generated one to encrypt the node key (fine for development)", "file", generated)
	}
	a.pass = pass
	if err := a.loadNode(); err != nil {
		a.log.Info("no usable node SVID on disk; will attest", "reason", err)
	}
	if a.aead, err = a.cacheAEAD(); err != nil {
		a.log.Warn("the SVID cache cannot be used; SVIDs will be minted again after a restart", "error", err)
	}
	if a.nodeCert != nil && a.aead != nil {
		if err := a.loadCache(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("ignoring the saved SVID cache", "error", err)
		}
	}
	if (cfg.X509PoPCert == "") != (cfg.X509PoPKey == "") {
		return nil, errors.New("agent: --x509pop-cert and --x509pop-key go together")
	}
	if a.nodeCert == nil && cfg.JoinToken == "" && cfg.X509PoPCert == "" {
		return nil, fmt.Errorf("agent: %s holds no valid node SVID and neither --join-token nor --x509pop-cert was given", cfg.DataDir)
	}
	return a, nil
}

// loadNode reads the persisted node SVID, if valid.
func (a *Agent) loadNode() error {
	keyPEM, err := os.ReadFile(filepath.Join(a.cfg.DataDir, NodeKeyFile))
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(filepath.Join(a.cfg.DataDir, NodeCertFile))
	if err != nil {
		return err
	}
	key, err := keys.ParsePrivateKeyPEM(keyPEM, a.pass)
	if err != nil {
		return err
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		chain = append(chain, b.Bytes)
	}
	return a.setNode(key, chain, false)
}

// setNode installs (and optionally writes) the node SVID.
func (a *Agent) setNode(key crypto.Signer, chain [][]byte, persist bool) error {
	if len(chain) == 0 {
		return errors.New("empty node SVID chain")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return err
	}
	if a.now().After(leaf.NotAfter) {
		return fmt.Errorf("node SVID expired at %s", leaf.NotAfter.Format(time.RFC3339))
	}
	if len(leaf.URIs) != 1 {
		return errors.New("node SVID has no SPIFFE ID")
	}
	if persist {
		keyPEM, err := keys.EncryptPEM(key, a.pass)
		if err != nil {
			return err
		}
		var certPEM []byte
		for _, der := range chain {
			certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		if err := keys.WriteFile(filepath.Join(a.cfg.DataDir, NodeKeyFile), keyPEM, 0o600); err != nil {
			return err
		}
		if err := keys.WriteFile(filepath.Join(a.cfg.DataDir, NodeCertFile), certPEM, 0o600); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.nodeID = leaf.URIs[0].String()
	a.nodeCert = &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
	a.nodeRot = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	a.mu.Unlock()
	return nil
}

func (a *Agent) currentNodeCert() *tls.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeCert
}

func newCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	return key, csr, err
}

// Run attests if needed, then serves the Workload API and keeps syncing
// until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.redial(); err != nil {
		return err
	}
	defer func() { a.api().Close() }()
	if a.currentNodeCert() == nil {
		if err := a.attest(ctx); err != nil {
			return err
		}
		// The connection that attested presented no certificate; TLS
		// sessions keep what they began with.
		if err := a.redial(); err != nil {
			return err
		}
	}
	// Listeners first: if one cannot be had, nothing has started.
	var metricsLn net.Listener
	if a.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", a.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("agent: metrics listener: %w", err)
		}
		metricsLn = ln
	}
	if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
		closeListener(metricsLn)
		return fmt.Errorf("agent: socket directory: %w", err)
	}
	ws, err := workload.New(workload.Config{Socket: a.cfg.Socket, Source: a, Logger: a.log, Registerer: a.metrics.reg})
	if err != nil {
		closeListener(metricsLn)
		return fmt.Errorf("agent: workload API: %w", err)
	}
	// One task group: the first component to fail stops the others, and
	// Run returns once every one has.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ws.Serve(gctx) })
	g.Go(func() error { a.syncLoop(gctx); return nil })
	g.Go(func() error { a.rotateLoop(gctx); return nil })
	if a.cfg.Manifests != "" {
		m := a.declared()
		g.Go(func() error { return m.Run(gctx) })
	}
	if metricsLn != nil {
		g.Go(func() error { return a.serveMetrics(gctx, metricsLn) })
	}
	if a.cfg.Ready != nil {
		a.cfg.Ready()
	}
	a.writeStatus()
	return g.Wait()
}

// declared is the manager of the certificates the manifests declare: it
// issues through node provisioners with this node's SVID, and through any
// ACME server trusted by the system or the trust bundle.
func (a *Agent) declared() *declared.Manager {
	roots := a.cfg.CertRoots
	if len(roots) == 0 {
		roots = []string{manifest.DefaultDir}
	}
	return declared.New(declared.Config{
		Dir:          a.cfg.Manifests,
		AllowedRoots: roots,
		StatusFile:   filepath.Join(a.cfg.DataDir, declared.StatusFile),
		Node:         declared.NodeIssuer{Client: a.api},
		ACME:         declared.NewACMEIssuers(DeclaredACME(a.cfg, a.pass)),
		Logger:       a.log,
		Clock:        a.now,
		Jitter:       a.jitter,
	})
}

func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

func (a *Agent) attest(ctx context.Context) error {
	key, csr, err := newCSR()
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := &nodeapi.AttestRequest{JoinToken: a.cfg.JoinToken, CSR: csr}
	how := "the join token"
	if req.JoinToken == "" {
		how = "x509pop"
		if req.X509PoP, err = a.x509pop(actx); err != nil {
			return err
		}
	}
	resp, err := a.api().Attest(actx, req)
	if err != nil {
		return fmt.Errorf("agent: attestation with %s failed: %s", how, status.Convert(err).Message())
	}
	if err := a.setNode(key, resp.Chain, true); err != nil {
		return fmt.Errorf("agent: node SVID: %w", err)
	}
	a.setBundle(resp.Bundle)
	a.log.Info("node attested", "spiffe_id", resp.SPIFFEID)
	return nil
}

// x509pop answers the server's challenge with the node certificate's key.
func (a *Agent) x509pop(ctx context.Context) (*nodeapi.X509PoP, error) {
	certPEM, err := os.ReadFile(a.cfg.X509PoPCert)
	if err != nil {
		return nil, fmt.Errorf("agent: x509pop certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(a.cfg.X509PoPKey)
	if err != nil {
		return nil, fmt.Errorf("agent: x509pop key: %w", err)
	}
	key, err := keys.ParsePrivateKeyPEM(keyPEM, a.pass)
	if err != nil {
		return nil, fmt.Errorf("agent: x509pop key: %w", err)
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("agent: %s holds no PEM certificate", a.cfg.X509PoPCert)
	}
	ch, err := a.api().X509PoPChallenge(ctx, &nodeapi.ChallengeRequest{Chain: chain})
	if err != nil {
		return nil, fmt.Errorf("agent: x509pop challenge: %s", status.Convert(err).Message())
	}
	sig, err := nodeapi.SignX509PoPNonce(key, ch.Nonce)
	if err != nil {
		return nil, fmt.Errorf("agent: x509pop signature: %w", err)
	}
	return &nodeapi.X509PoP{Chain: chain, Nonce: ch.Nonce, Signature: sig}, nil
}

// redial replaces the connection to the server, so that new TLS sessions
// present the current node SVID.
func (a *Agent) redial() error {
	c, err := nodeapi.Dial(a.cfg.ServerURL, a.roots, a.currentNodeCert)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.mu.Lock()
	old := a.client
	a.client = c
	a.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// api is the current connection to the server.
func (a *Agent) api() *nodeapi.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// backoff is jittered exponential: 100ms doubling to 30s, of which the
// second half is drawn by a.jitter.
func (a *Agent) backoff(attempt int) time.Duration {
	d := time.Duration(float64(100*time.Millisecond) * math.Pow(2, float64(min(attempt, 9))))
	d = min(d, 30*time.Second)
	return d/2 + a.jitter(d/2)
}

// syncLoop keeps a sync stream open, applying what it brings.
func (a *Agent) syncLoop(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := a.syncOnce(ctx, &attempt)
		a.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.PermissionDenied {
			a.log.Error("the server refuses this node", "error", st.Message())
		} else {
			a.log.Warn("sync stream ended; retrying", "error", err)
		}
		if !periodic.Sleep(ctx, a.backoff(attempt)) {
			return
		}
	}
}

func (a *Agent) syncOnce(ctx context.Context, attempt *int) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := a.api().Sync(sctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.streams++
	a.mu.Unlock()
	a.metrics.streams.Inc()
	for {
		msg, err := recv()
		if err != nil {
			return err
		}
		*attempt = 0
		a.apply(msg)
	}
}

func (a *Agent) setConnected(c bool) {
	a.mu.Lock()
	a.connected = c
	a.mu.Unlock()
	a.metrics.connected.Set(boolFloat(c))
	a.writeStatus()
}

// apply takes in a sync message and asks the rotator to mint what is new.
func (a *Agent) apply(msg *nodeapi.SyncResponse) {
	a.mu.Lock()
	if msg.Full {
		keep := map[string]bool{}
		for _, e := range msg.Entries {
			keep[e.ID] = true
		}
		for id := range a.entries {
			if !keep[id] {
				delete(a.entries, id)
			}
		}
	}
	for _, e := range msg.Entries {
		a.entries[e.ID] = e
	}
	removed := false
	for _, id := range msg.Removed {
		delete(a.entries, id)
	}
	for id := range a.svids {
		if _, ok := a.entries[id]; !ok {
			delete(a.svids, id)
			removed = true
		}
	}
	a.connected = true
	a.lastSync = a.now()
	a.mu.Unlock()
	if msg.Bundle != nil {
		a.setBundle(*msg.Bundle)
	} else if removed {
		a.notify()
	}
	a.metrics.connected.Set(1)
	a.kick()
}

func (a *Agent) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) setBundle(b nodeapi.Bundle) {
	a.mu.Lock()
	a.bundle = b
	a.mu.Unlock()
	a.notify()
}

// notify wakes the Workload API streams.
func (a *Agent) notify() {
	a.mu.Lock()
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	a.writeStatus()
	a.saveCache()
}

// rotateLoop mints SVIDs that are missing, out of date or past half-life,
// and renews the node SVID at half-life.
func (a *Agent) rotateLoop(ctx context.Context) {
	failures := 0
	for {
		next, err := a.rotate(ctx)
		wait := time.Until(next)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("minting SVIDs failed; keeping the ones held", "error", err)
			failures++
			wait = a.backoff(failures)
		} else {
			failures = 0
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// mintBatch is how many SVIDs one mint request carries.
const mintBatch = 500

func (a *Agent) rotate(ctx context.Context) (next time.Time, err error) {
	now := a.now()
	next = now.Add(time.Hour)
	a.mu.Lock()
	nodeDue := a.nodeRot
	var due []nodeapi.Entry
	for id, e := range a.entries {
		h := a.svids[id]
		switch {
		case h == nil, h.entry.Revision != e.Revision, !now.Before(h.rotateAt):
			due = append(due, e)
		default:
			next = minTime(next, h.rotateAt)
		}
	}
	a.mu.Unlock()
	if !now.Before(nodeDue) {
		if err := a.renewNode(ctx); err != nil {
			return now, err
		}
	}
	a.mu.Lock()
	next = minTime(next, a.nodeRot)
	a.mu.Unlock()
	slices.SortFunc(due, func(x, y nodeapi.Entry) int { return cmpString(x.ID, y.ID) })
	for start := 0; start < len(due); start += mintBatch {
		batch := due[start:min(start+mintBatch, len(due))]
		req := &nodeapi.MintRequest{Items: make([]nodeapi.MintItem, len(batch))}
		keysHeld := make([]crypto.Signer, len(batch))
		for i, e := range batch {
			k, csr, err := newCSR()
			if err != nil {
				return now, err
			}
			keysHeld[i] = k
			req.Items[i] = nodeapi.MintItem{EntryID: e.ID, CSR: csr}
		}
		mctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := a.api().MintX509SVIDs(mctx, req)
		cancel()
		if err != nil {
			return now, err
		}
		a.mu.Lock()
		for i, r := range resp.Items {
			if r.Error != "" || len(r.Chain) == 0 {
				a.log.Warn("SVID not minted", "entry", r.EntryID, "error", r.Error)
				continue
			}
			chain := make([]*x509.Certificate, 0, len(r.Chain))
			for _, der := range r.Chain {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					break
				}
				chain = append(chain, c)
			}
			if len(chain) != len(r.Chain) {
				continue
			}
			leaf := chain[0]
			rot := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
			if e, ok := a.entries[batch[i].ID]; ok {
				a.svids[e.ID] = &heldSVID{entry: batch[i], chain: chain, key: keysHeld[i], rotateAt: rot}
				next = minTime(next, rot)
			}
		}
		a.mu.Unlock()
		a.metrics.minted.Add(float64(len(resp.Items)))
		a.notify()
	}
	return next, nil
}

func (a *Agent) renewNode(ctx context.Context) error {
	key, csr, err := newCSR()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := a.api().RenewNode(rctx, &nodeapi.RenewRequest{CSR: csr})
	if err != nil {
		return fmt.Errorf("renew node SVID: %w", err)
	}
	if err := a.setNode(key, resp.Chain, true); err != nil {
		return err
	}
	return a.redial()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Status returns the agent's status now.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	st := Status{NodeID: a.nodeID, Server: a.cfg.ServerURL, Connected: a.connected, LastSync: a.lastSync, SyncStreams: a.streams,
		Entries: len(a.entries), SVIDs: len(a.svids), UpdatedAt: now}
	if a.nodeCert != nil {
		st.NodeSVIDExpiry = a.nodeCert.Leaf.NotAfter
	}
	for _, h := range a.svids {
		if exp := h.chain[0].NotAfter; st.OutageBudgetAt.IsZero() || exp.Before(st.OutageBudgetAt) {
			st.OutageBudgetAt = exp
		}
	}
	if !st.OutageBudgetAt.IsZero() {
		st.OutageBudget = max(st.OutageBudgetAt.Sub(now), 0)
	}
	return st
}

// writeStatus records the status in DataDir/status.json (best effort).
func (a *Agent) writeStatus() {
	st := a.Status()
	a.metrics.svids.Set(float64(st.SVIDs))
	a.metrics.budget.Set(st.OutageBudget.Seconds())
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return
	}
	_ = keys.WriteFile(filepath.Join(a.cfg.DataDir, StatusFile), append(data, '\n'), 0o600)
}

// ReadStatus reads DataDir/status.json.
func ReadStatus(dataDir string) (Status, error) {
	var st Status
	data, err := os.ReadFile(filepath.Join(dataDir, StatusFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// serveMetrics serves Prometheus metrics on ln until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	return nil
}

type metrics struct {
	reg       *prometheus.Registry
	connected prometheus.Gauge
	svids     prometheus.Gauge
	budget    prometheus.Gauge
	minted    prometheus.Counter
	streams   prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshpki_agent_connected", Help: "1 while the sync stream to the server is up."}),
		svids:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshpki_agent_svids", Help: "X.509-SVIDs held."}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshpki_agent_outage_budget_seconds",
			Help: "How long every workload stays covered if the server vanished now: until the first held SVID expires."}),
		minted: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshpki_agent_svids_minted_total", Help: "X.509-SVIDs minted."}),
		streams: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshpki_agent_sync_streams_total",
			Help: "Sync streams opened to the server; more than one means the stream was lost and resynced."}),
	}
	m.reg.MustRegister(m.connected, m.svids, m.budget, m.minted, m.streams, buildinfo.Collector())
	return m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// DialNode connects to cfg.ServerURL with the node SVID the agent keeps in
// cfg.DataDir, for one-shot commands beside an agent ('meshpki apply'). It
// never attests: without a valid node SVID there it says to start the
// agent first.
func DialNode(cfg Config) (*nodeapi.Client, error) {
	if cfg.ServerURL == "" || cfg.TrustBundle == "" || cfg.DataDir == "" {
		return nil, errors.New("agent: --server, --trust-bundle and --data are required")
	}
	a := &Agent{cfg: cfg, now: time.Now}
	if cfg.Clock != nil {
		a.now = cfg.Clock
	}
	pass, _, err := keys.ResolvePassphrase(cfg.DataDir, cfg.PasswordFile, false)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.pass = pass
	if err := a.loadNode(); err != nil {
		return nil, fmt.Errorf("agent: no usable node SVID in %s (start 'meshpki agent --data %s' to attest the node): %w", cfg.DataDir, cfg.DataDir, err)
	}
	pemData, err := os.ReadFile(cfg.TrustBundle)
	if err != nil {
		return nil, fmt.Errorf("agent: trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("agent: trust bundle %s holds no PEM certificate", cfg.TrustBundle)
	}
	return nodeapi.Dial(cfg.ServerURL, roots, a.currentNodeCert)
}

// DeclaredACME is the ACME configuration the agent with cfg uses for
// ACMEIssuer manifests (account keys in DataDir/acme).
func DeclaredACME(cfg Config, pass []byte) declared.ACMEConfig {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pemData, err := os.ReadFile(cfg.TrustBundle); err == nil {
		roots.AppendCertsFromPEM(pemData)
	}
	return declared.ACMEConfig{AccountDir: filepath.Join(cfg.DataDir, "acme"), Passphrase: pass, Roots: roots, HTTP01Address: cfg.ACMEHTTP01}
}

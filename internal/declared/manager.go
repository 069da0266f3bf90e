package declared

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/certfiles"
	"github.com/meshpki/meshpki/internal/hooks"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/manifest"
	"github.com/meshpki/meshpki/internal/store"
)

// Config configures a Manager.
type Config struct {
	// Dir holds the manifests (*.yaml, *.yml; several per file). Run reads
	// it again every Poll, so a change applies without a restart.
	Dir string
	// AllowedRoots are the directories certificates may be written in (a
	// manifest's spec.meshpki.dir must be inside one); the operator's,
	// not the manifests'.
	AllowedRoots []string
	// StatusFile, if set, is where Run records the Report after each pass.
	StatusFile string
	// Node issues for issuerRef kinds Issuer and ClusterIssuer (a node
	// provisioner); nil refuses them.
	Node Issuer
	// ACME returns the issuer of an ACMEIssuer's directory URL; nil
	// refuses them.
	ACME func(directoryURL string) (Issuer, error)
	// Poll is how often Dir is read again (default 2s).
	Poll time.Duration
	// IssueTimeout bounds one issuance (default 2 minutes).
	IssueTimeout time.Duration
	Logger       *slog.Logger
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Jitter returns a random duration in [0, max] (renewal spread and
	// retry backoff); nil means none.
	Jitter func(max time.Duration) time.Duration
}

// Manager keeps the declared certificates issued, written and renewed.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	issued map[string]string // IssuedFor by certificate, from the last report

	// Only the goroutine in Run or Apply touches these.
	files map[string]*fileState
	certs map[string]*certState
	acme  map[string]Issuer

	mu     sync.Mutex
	report Report
}

type fileState struct {
	modTime  time.Time
	size     int64
	certs    []manifest.Certificate // the last good declaration
	err      *ManifestError
	warnings []string
}

type certState struct {
	m        manifest.Certificate
	hash     string // fingerprint of m's request
	chain    []*x509.Certificate
	key      crypto.Signer
	looked   bool      // the files on disk were read
	due      time.Time // the next issuance (or retry)
	failures int
	status   CertificateStatus
}

// New returns a Manager; it reads nothing yet.
func New(cfg Config) *Manager {
	m := &Manager{cfg: cfg, log: cfg.Logger, now: cfg.Clock, files: map[string]*fileState{}, certs: map[string]*certState{},
		acme: map[string]Issuer{}, issued: map[string]string{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.cfg.Poll <= 0 {
		m.cfg.Poll = 2 * time.Second
	}
	if m.cfg.IssueTimeout <= 0 {
		m.cfg.IssueTimeout = 2 * time.Minute
	}
	if cfg.StatusFile != "" {
		if r, err := ReadReport(cfg.StatusFile); err == nil {
			for _, c := range r.Certificates {
				m.issued[c.Name] = c.IssuedFor
			}
		}
	}
	return m
}

// Run keeps every manifest in Dir applied until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	m.log.Info("declared certificates: watching manifests", "dir", m.cfg.Dir, "allowed_roots", strings.Join(m.cfg.AllowedRoots, ","))
	for {
		m.scan()
		next := m.now().Add(m.cfg.Poll)
		for _, id := range slices.Sorted(maps.Keys(m.certs)) {
			if ctx.Err() != nil {
				return nil
			}
			st := m.certs[id]
			m.process(ctx, st)
			if st.due.Before(next) {
				next = st.due
			}
		}
		m.publish()
		t := time.NewTimer(max(next.Sub(m.now()), 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// NeedsNode reports whether any of certs is issued through a node
// provisioner, and so needs the node's identity.
func NeedsNode(certs []manifest.Certificate) bool {
	for i := range certs {
		if !usesACME(&certs[i]) {
			return true
		}
	}
	return false
}

// Apply applies certs once: each is issued if its files are missing, hold
// another declaration, or are due for renewal (every one, with force), and
// its hooks run. It returns their states, in order.
func (m *Manager) Apply(ctx context.Context, certs []manifest.Certificate, force bool) []CertificateStatus {
	out := make([]CertificateStatus, 0, len(certs))
	seen := map[string]string{}
	for _, c := range certs {
		if at, dup := seen[c.ID()]; dup {
			out = append(out, CertificateStatus{Name: c.ID(), File: c.File, Line: c.Line, LastFailure: "Certificate " + c.ID() + " is already declared at " + at + "; this one is ignored"})
			continue
		}
		seen[c.ID()] = fmt.Sprintf("%s:%d", c.File, c.Line)
		st := m.track(c)
		m.look(st)
		if force {
			st.due = m.now()
		}
		m.process(ctx, st)
		m.refresh(st, m.now())
		out = append(out, st.status.clone())
	}
	return out
}

// Report returns the state after the last pass of Run.
func (m *Manager) Report() Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.report
}

// scan reads Dir again: files changed since the last pass are parsed; a
// file that no longer parses keeps its last good declaration and is
// reported.
func (m *Manager) scan() {
	entries, err := os.ReadDir(m.cfg.Dir)
	var dirErr *ManifestError
	if err != nil {
		dirErr = &ManifestError{File: m.cfg.Dir, Message: "cannot read the manifests directory: " + err.Error()}
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(m.cfg.Dir, name)
		fi, err := os.Stat(path) // a ConfigMap volume's files are symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		seen[path] = true
		f := m.files[path]
		if f != nil && f.modTime.Equal(fi.ModTime()) && f.size == fi.Size() {
			continue
		}
		if f == nil {
			f = &fileState{}
			m.files[path] = f
		}
		f.modTime, f.size = fi.ModTime(), fi.Size()
		certs, warnings, err := parseFile(path)
		if err != nil {
			me := &ManifestError{File: path, Message: err.Error()}
			var pe *manifest.Error
			if errors.As(err, &pe) {
				me.Line, me.Message = pe.Line, pe.Msg
			}
			f.err = me
			m.log.Warn("declared certificates: manifest not applied; its last good declaration stays", "file", path, "line", me.Line, "error", me.Message)
			continue
		}
		f.certs, f.err, f.warnings = certs, nil, warnings
	}
	for path := range m.files {
		if !seen[path] {
			delete(m.files, path)
		}
	}

	// The declarations now, first file (by name) first.
	var errs []ManifestError
	if dirErr != nil {
		errs = append(errs, *dirErr)
	}
	where := map[string]string{}
	live := map[string]bool{}
	for _, path := range slices.Sorted(maps.Keys(m.files)) {
		f := m.files[path]
		if f.err != nil {
			errs = append(errs, *f.err)
		}
		for _, c := range f.certs {
			id := c.ID()
			if at, dup := where[id]; dup {
				errs = append(errs, ManifestError{File: c.File, Line: c.Line, Message: fmt.Sprintf("Certificate %s is already declared at %s; this one is ignored", id, at)})
				continue
			}
			where[id] = fmt.Sprintf("%s:%d", c.File, c.Line)
			live[id] = true
			m.track(c)
		}
	}
	for id := range m.certs {
		if !live[id] {
			m.log.Info("declared certificates: manifest removed; its files stay", "certificate", id)
			delete(m.certs, id)
		}
	}
	m.mu.Lock()
	m.report.Errors = errs
	m.mu.Unlock()
}

func parseFile(path string) ([]manifest.Certificate, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	certs, warnings, err := manifest.Parse(path, f)
	var ws []string
	for _, w := range warnings {
		ws = append(ws, w.String())
	}
	return certs, ws, err
}

// track records c's declaration: a new certificate, or a changed one,
// which is due at once.
func (m *Manager) track(c manifest.Certificate) *certState {
	if l := *c.Spec.Meshpki; l.DirDefaulted && len(m.cfg.AllowedRoots) > 0 {
		l.Dir = filepath.Join(m.cfg.AllowedRoots[0], c.Spec.SecretName)
		c.Spec.Meshpki = &l
	}
	id := c.ID()
	h := fingerprint(c)
	st := m.certs[id]
	if st == nil {
		st = &certState{}
		m.certs[id] = st
		st.status.IssuedFor = m.issued[id]
	} else if st.hash != h && st.looked {
		m.log.Info("declared certificates: manifest changed; issuing again", "certificate", id)
		st.due = m.now()
	}
	st.m, st.hash = c, h
	st.status.Name, st.status.File, st.status.Line = id, c.File, c.Line
	st.status.SecretName, st.status.Dir = c.Spec.SecretName, c.Spec.Meshpki.Dir
	st.status.Issuer = c.Spec.IssuerRef.Kind + "/" + c.Spec.IssuerRef.Name
	if usesACME(&c) {
		st.status.Issuer = "ACME/" + c.Spec.Meshpki.ACME
	}
	return st
}

// fingerprint identifies what c asks of an issuance: everything but where
// it was read from and the hooks.
func fingerprint(c manifest.Certificate) string {
	spec := c.Spec
	local := *spec.Meshpki
	local.Hooks = nil
	spec.Meshpki = &local
	b, _ := json.Marshal(struct {
		ID   string
		Spec manifest.Spec
	}{c.ID(), spec})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// look reads what c's directory holds once, so that a restart does not
// issue again what is still good: a whole set, for the names asked, of
// the key type asked, unexpired, and issued for the manifest as it is now.
func (m *Manager) look(st *certState) {
	if st.looked {
		return
	}
	st.looked = true
	now := m.now()
	// Nothing is read from a directory the files may not be written in.
	l, _ := layout(&st.m, m.cfg.AllowedRoots)
	if err := l.Check(); err != nil {
		st.due = now
		return
	}
	chain, key, err := onDisk(&st.m)
	if err != nil {
		st.due = now
		return
	}
	st.chain, st.key = chain, key
	leaf := chain[0]
	kt, _ := keys.TypeOf(leaf.PublicKey)
	switch {
	case st.status.IssuedFor != "" && st.status.IssuedFor != st.hash,
		!slices.Equal(leafNames(leaf).strings(), namesOf(&st.m).strings()),
		kt != keyType(st.m.Spec.PrivateKey),
		!now.Before(leaf.NotAfter):
		st.due = now
	default:
		st.status.IssuedFor = st.hash
		st.due = RenewalTime(leaf, st.m.RenewBeforeDuration(), time.Time{}, m.cfg.Jitter)
	}
}

// process issues st if it is due.
func (m *Manager) process(ctx context.Context, st *certState) {
	m.look(st)
	now := m.now()
	if now.Before(st.due) {
		return
	}
	if err := m.issue(ctx, st, now); err != nil {
		st.failures++
		var refused *RefusedError
		slow := errors.As(err, &refused) || errors.Is(err, certfiles.ErrOutsideRoots) || errors.Is(err, certfiles.ErrSymlink)
		st.due = now.Add(retryDelay(st.failures, slow, m.cfg.Jitter))
		st.status.FailedIssuanceAttempts = st.failures
		st.status.LastFailureTime = now
		st.status.LastFailure = err.Error()
		reason := "Failed"
		if slow {
			reason = "Refused"
		}
		st.status.setCondition(ConditionIssuing, "True", reason, err.Error()+"; next attempt "+st.due.UTC().Format(time.RFC3339), now)
		m.log.Warn("declared certificates: issuance failed", "certificate", st.status.Name, "error", err, "retry_at", st.due)
	}
}

// issue has st issued, writes its files and runs its hooks; the error is
// about the issuance or the files, never the hooks (which run only once
// the files are switched in, and are reported on their own).
func (m *Manager) issue(ctx context.Context, st *certState, now time.Time) error {
	c := &st.m
	kt := keyType(c.Spec.PrivateKey)
	key := st.key
	if cur, _ := keys.TypeOf(pub(key)); key == nil || c.Spec.PrivateKey.RotationPolicy != "Never" || cur != kt {
		var err error
		if key, err = kt.Generate(); err != nil {
			return fmt.Errorf("generate a %s key: %w", kt, err)
		}
	}
	csr, err := newCSR(c, key)
	if err != nil {
		return fmt.Errorf("make the CSR: %w", err)
	}
	issuer, err := m.issuer(c)
	if err != nil {
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, m.cfg.IssueTimeout)
	res, err := issuer.Issue(ictx, Request{Certificate: c, CSR: csr, TTL: c.RequestedDuration()})
	cancel()
	if err != nil {
		return err
	}
	leaf := res.Chain[0]
	if !publicKeyEqual(key.Public(), leaf.PublicKey) {
		return errors.New("the issuer returned a certificate for another key")
	}
	if missing := missingNames(namesOf(c).strings(), leafNames(leaf).strings()); len(missing) > 0 {
		return fmt.Errorf("the issuer left out %s", strings.Join(missing, ", "))
	}
	l, err := layout(c, m.cfg.AllowedRoots)
	if err != nil {
		return err
	}
	l.Now = m.now
	if err := certfiles.Write(l, certfiles.Set{Key: key, Chain: res.Chain, CA: res.Roots, KeyEncoding: c.Spec.PrivateKey.Encoding}, now); err != nil {
		return err
	}
	st.chain, st.key, st.failures = res.Chain, key, 0
	st.due = RenewalTime(leaf, c.RenewBeforeDuration(), now, m.cfg.Jitter)
	st.status.IssuedFor = st.hash
	st.status.Revision++
	st.status.LastRenewal = now
	st.status.FailedIssuanceAttempts = 0
	m.log.Info("declared certificates: issued and written", "certificate", st.status.Name, "serial", store.SerialOf(leaf.SerialNumber),
		"not_after", leaf.NotAfter, "dir", l.Dir, "renewal", st.due)

	if hs := c.Spec.Meshpki.Hooks; len(hs) > 0 {
		results := hooks.Run(ctx, hs)
		st.status.Hooks = st.status.Hooks[:0]
		ok, failed := true, ""
		for _, r := range results {
			h := HookStatus{Name: r.Name, OK: r.Err == nil && !r.Skipped, Skipped: r.Skipped, Duration: r.Duration}
			if r.Err != nil {
				h.Error = r.Err.Error()
				ok = false
				if failed == "" {
					failed = r.Name + ": " + h.Error
				}
				m.log.Warn("declared certificates: hook failed (the files are written)", "certificate", st.status.Name, "hook", r.Name, "error", r.Err)
			}
			st.status.Hooks = append(st.status.Hooks, h)
		}
		if ok {
			st.status.setCondition(ConditionHooks, "True", "Succeeded", fmt.Sprintf("%d hooks ran", len(results)), m.now())
		} else {
			st.status.setCondition(ConditionHooks, "False", "Failed", failed, m.now())
		}
	}
	return nil
}

func pub(k crypto.Signer) crypto.PublicKey {
	if k == nil {
		return nil
	}
	return k.Public()
}

func missingNames(want, got []string) []string {
	var out []string
	for _, n := range want {
		if !slices.Contains(got, n) {
			out = append(out, n)
		}
	}
	return out
}

// usesACME reports whether c is ordered from an ACME server: an
// ACMEIssuer, or an Issuer or ClusterIssuer given an ACME directory URL
// (where cert-manager keeps that URL on the issuer resource).
func usesACME(c *manifest.Certificate) bool {
	return c.Spec.IssuerRef.Kind == "ACMEIssuer" || c.Spec.Meshpki.ACME != ""
}

// issuer is the issuer c's issuerRef names.
func (m *Manager) issuer(c *manifest.Certificate) (Issuer, error) {
	if !usesACME(c) {
		if m.cfg.Node == nil {
			return nil, &RefusedError{Msg: "issuerRef " + c.Spec.IssuerRef.Kind + "/" + c.Spec.IssuerRef.Name + " needs the node's identity, which this command does not have"}
		}
		return m.cfg.Node, nil
	}
	url := c.Spec.Meshpki.ACME
	if is := m.acme[url]; is != nil {
		return is, nil
	}
	if m.cfg.ACME == nil {
		return nil, &RefusedError{Msg: "ACME issuers are not enabled here"}
	}
	is, err := m.cfg.ACME(url)
	if err != nil {
		return nil, err
	}
	m.acme[url] = is
	return is, nil
}

// refresh brings st's status up to date with the time.
func (m *Manager) refresh(st *certState, now time.Time) {
	s := &st.status
	s.RenewalTime = st.due
	ready, reason, msg := false, "DoesNotExist", "no certificate has been written yet"
	if len(st.chain) > 0 {
		leaf := st.chain[0]
		s.Serial = string(store.SerialOf(leaf.SerialNumber))
		s.NotBefore, s.NotAfter = leaf.NotBefore, leaf.NotAfter
		switch {
		case !now.Before(leaf.NotAfter):
			reason, msg = "Expired", "the certificate expired at "+leaf.NotAfter.UTC().Format(time.RFC3339)
		case s.IssuedFor != st.hash:
			reason, msg = "ManifestChanged", "the files were issued for an earlier version of the manifest"
		default:
			ready, reason, msg = true, "Ready", "the certificate is up to date and has not expired"
		}
	}
	s.Ready = ready
	s.setCondition(ConditionReady, boolStatus(ready), reason, msg, now)
	if _, ok := s.Condition(ConditionIssuing); !ok || ready && st.failures == 0 {
		s.setCondition(ConditionIssuing, "False", "UpToDate", "serial "+s.Serial+"; next renewal "+st.due.UTC().Format(time.RFC3339), now)
	}
	// One order for readers that take the first: Ready, Issuing, HooksSucceeded.
	slices.SortStableFunc(s.Conditions, func(a, b Condition) int { return conditionRank(a.Type) - conditionRank(b.Type) })
}

func conditionRank(typ string) int {
	switch typ {
	case ConditionReady:
		return 0
	case ConditionIssuing:
		return 1
	}
	return 2
}

// publish records the report of this pass.
func (m *Manager) publish() {
	now := m.now()
	r := Report{Dir: m.cfg.Dir, UpdatedAt: now}
	for _, id := range slices.Sorted(maps.Keys(m.certs)) {
		st := m.certs[id]
		m.refresh(st, now)
		r.Certificates = append(r.Certificates, st.status.clone())
	}
	for _, path := range slices.Sorted(maps.Keys(m.files)) {
		r.Warnings = append(r.Warnings, m.files[path].warnings...)
	}
	m.mu.Lock()
	r.Errors = m.report.Errors
	m.mu.Unlock()
	// The file first: whoever saw a state in Report finds it on disk too
	// (a manager started next adopts what the file records).
	if m.cfg.StatusFile != "" {
		if err := writeReport(m.cfg.StatusFile, r); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("declared certificates: cannot write the status file", "file", m.cfg.StatusFile, "error", err)
		}
	}
	m.mu.Lock()
	r.Errors = m.report.Errors
	m.report = r
	m.mu.Unlock()
}

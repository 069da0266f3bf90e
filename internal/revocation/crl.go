package revocation

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of the CRL publisher.
const (
	// DefaultCRLValidity is nextUpdate - thisUpdate. A CRL is built again
	// when a third of it has passed, or at once when anything is revoked.
	DefaultCRLValidity = 24 * time.Hour
	// DefaultPointerMinLifetime: leaves that live longer carry a CRL
	// Distribution Point and AIA; shorter-lived ones carry neither.
	DefaultPointerMinLifetime = 24 * time.Hour
	// DefaultShardEntries is how many entries a generation's CRL holds per
	// shard before new leaves are spread over twice as many shards.
	DefaultShardEntries = 50000
	// crlPoll is how often replicas look for new CRLs and the leader for
	// revocations made elsewhere; crlSettle how long the leader lets a
	// burst of local revocations gather before building.
	crlPoll   = 250 * time.Millisecond
	crlSettle = 50 * time.Millisecond
)

// CRLStore is what the publisher needs of the store.
type CRLStore interface {
	store.CRLs
	GetCertificate(ctx context.Context, serial store.Serial) (store.Certificate, error)
}

// CRLPublisher builds the CRLs of every intermediate generation and of the
// root, and serves them (RFC 5280, section 5).
//
// Each generation has a full CRL (scope "NAME/GEN") and one CRL per shard
// ("NAME/GEN/SHARD"), each shard with a critical Issuing Distribution
// Point naming the URL the leaves on it carry as their CRL Distribution
// Point. Leaves are spread over the shards at issuance (LeafPointers) and
// the store records each leaf's shard; a generation starts with one shard
// and doubles the shards new leaves use whenever its CRL holds more than
// ShardEntries per shard, so no leaf ever moves. The root's CRL ("root")
// lists the intermediate generations the root revoked.
//
// One replica at a time builds (the elected leader, Leading): at once when a
// revocation is made here (Wake), within crlPoll of one made on another
// replica (the store's revocation counter), and when a third of Validity
// has passed. CRLs go to the store, numbered by the microsecond of their
// build and never lower than the last; every replica serves what the store
// holds, read again every crlPoll.
type CRLPublisher struct {
	Hierarchy *ca.Hierarchy
	Store     CRLStore
	// BaseURL is where relying parties fetch /crl… and /ocsp, preferably
	// http:// (RFC 5280 relying parties expect it); "" puts no pointers
	// in leaves.
	BaseURL            string
	Validity           time.Duration // default DefaultCRLValidity
	PointerMinLifetime time.Duration // default DefaultPointerMinLifetime
	ShardEntries       int           // default DefaultShardEntries
	// Leading reports whether this replica builds (nil: always, for a
	// single server). Replicas that do not build serve what the leader
	// stored.
	Leading func() bool
	Clock   func() time.Time
	Logger  *slog.Logger

	once      sync.Once
	wake      chan struct{}
	pendingMu sync.Mutex
	pending   map[store.Serial]struct{} // revoked here, shards not yet rebuilt
	published atomic.Pointer[publishedSet]
	mu        sync.Mutex // serialises refresh and build
}

// PublishedCRL is one CRL as it is served.
type PublishedCRL struct {
	Scope                  string
	DER                    []byte
	Number                 int64
	ThisUpdate, NextUpdate time.Time
	Shards                 int
	revision               int64
}

// PEM is the CRL in PEM form ("X509 CRL").
func (c *PublishedCRL) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER})
}

// publishedSet is an immutable snapshot of the CRLs the store holds.
type publishedSet struct {
	byScope map[string]*PublishedCRL
}

func (p *CRLPublisher) init() {
	p.once.Do(func() {
		p.wake = make(chan struct{}, 1)
		p.published.Store(&publishedSet{byScope: map[string]*PublishedCRL{}})
	})
}

func (p *CRLPublisher) now() time.Time {
	if p.Clock != nil {
		return p.Clock()
	}
	return time.Now()
}

func (p *CRLPublisher) validity() time.Duration {
	if p.Validity > 0 {
		return p.Validity
	}
	return DefaultCRLValidity
}

func (p *CRLPublisher) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Wake has the publisher look for revocations now; the revocation Service
// calls it (through OnRevoked) after each local revocation.
func (p *CRLPublisher) Wake() {
	p.init()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// GenerationScope names a generation's full CRL.
func GenerationScope(name string, gen int) string { return name + "/" + strconv.Itoa(gen) }

// shardScope names one shard's CRL.
func shardScope(name string, gen, shard int) string {
	return GenerationScope(name, gen) + "/" + strconv.Itoa(shard)
}

// RootScope names the root's CRL.
const RootScope = ca.ReservedIssuerName

// LeafPointers implements ca.RevocationPointers: a shard picked at random
// among the generation's current shards, and pointers when the lifetime
// exceeds PointerMinLifetime and BaseURL is set.
func (p *CRLPublisher) LeafPointers(iss *ca.Issuer, lifetime time.Duration) (ca.Pointers, int) {
	p.init()
	shards := 1
	if c := p.published.Load().byScope[GenerationScope(iss.Name, iss.Generation)]; c != nil && c.Shards > 1 {
		shards = c.Shards
	}
	shard := rand.IntN(shards)
	minLifetime := p.PointerMinLifetime
	if minLifetime == 0 {
		minLifetime = DefaultPointerMinLifetime
	}
	if p.BaseURL == "" || lifetime <= minLifetime {
		return ca.Pointers{}, shard
	}
	base := strings.TrimRight(p.BaseURL, "/")
	return ca.Pointers{
		CRL:       base + "/crl/" + shardScope(iss.Name, iss.Generation, shard),
		OCSP:      base + "/ocsp",
		CAIssuers: base + "/intermediates/" + GenerationScope(iss.Name, iss.Generation) + ".der",
	}, shard
}

// Run refreshes and, while this replica leads, builds CRLs until ctx
// ends.
func (p *CRLPublisher) Run(ctx context.Context) error {
	p.init()
	tick := time.NewTicker(crlPoll)
	defer tick.Stop()
	for {
		if err := p.Cycle(ctx); err != nil && ctx.Err() == nil {
			p.log().Error("crl: publish", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-p.wake:
			// Let a burst of revocations gather into one build.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(crlSettle):
			}
		}
	}
}

// Cycle reads what the store holds and, if this replica leads, builds
// every CRL that is stale. Run calls it; tests call it directly.
func (p *CRLPublisher) Cycle(ctx context.Context) error {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.refresh(ctx); err != nil {
		return err
	}
	now := p.now()
	if p.Leading != nil && !p.Leading() {
		// The leader finds what was revoked here through the store.
		p.pendingMu.Lock()
		p.pending = nil
		p.pendingMu.Unlock()
		return nil
	}
	// The shards of what was revoked here first: they are small, and
	// what relying parties fetch through certificates' CDP.
	if built, err := p.buildPendingShards(ctx, now); err != nil {
		p.log().Error("crl: shards of new revocations", "error", err)
	} else if built {
		if err := p.refresh(ctx); err != nil {
			return err
		}
	}
	built, err := p.build(ctx, now)
	if built {
		err = errors.Join(err, p.refresh(ctx))
	}
	return err
}

// refresh loads the CRLs whose number changed in the store.
func (p *CRLPublisher) refresh(ctx context.Context) error {
	list, err := p.Store.ListCRLs(ctx)
	if err != nil {
		return err
	}
	old := p.published.Load().byScope
	next := make(map[string]*PublishedCRL, len(list))
	changed := len(list) != len(old)
	for _, rec := range list {
		if c := old[rec.Scope]; c != nil && c.Number == rec.Number {
			next[rec.Scope] = c
			continue
		}
		full, err := p.Store.GetCRL(ctx, rec.Scope)
		if err != nil {
			return err
		}
		changed = true
		next[rec.Scope] = &PublishedCRL{Scope: full.Scope, DER: full.DER, Number: full.Number, ThisUpdate: full.ThisUpdate,
			NextUpdate: full.NextUpdate, Shards: full.Shards, revision: full.Revision}
	}
	if changed {
		p.published.Store(&publishedSet{byScope: next})
	}
	return nil
}

// build builds every stale CRL and reports whether it published any.
func (p *CRLPublisher) build(ctx context.Context, now time.Time) (bool, error) {
	// The counter is read before the rows: a revocation after this read
	// moves it again, and the next cycle builds once more.
	revision, err := p.Store.RevocationRevision(ctx)
	if err != nil {
		return false, err
	}
	published := p.published.Load().byScope
	stale := func(c *PublishedCRL, revision int64) bool {
		return c == nil || c.revision < revision || now.Sub(c.ThisUpdate) >= p.validity()/3 || !now.Before(c.NextUpdate)
	}
	built := false
	var errs []error
	issuers := p.Hierarchy.Issuers()
	for _, iss := range issuers {
		if !now.Before(iss.Cert.NotAfter) || !stale(published[GenerationScope(iss.Name, iss.Generation)], revision) {
			continue
		}
		ok, err := p.buildGeneration(ctx, iss, revision, published, now)
		built = built || ok
		if err != nil {
			errs = append(errs, fmt.Errorf("crl of %s: %w", GenerationScope(iss.Name, iss.Generation), err))
		}
	}
	// The root's "revision" is how many generations it revoked: they are
	// never unrevoked, so the count only grows.
	var revokedIssuers int64
	for _, iss := range issuers {
		if !iss.RevokedAt.IsZero() {
			revokedIssuers++
		}
	}
	if stale(published[RootScope], revokedIssuers) {
		ok, err := p.buildRoot(ctx, issuers, revokedIssuers, published, now)
		built = built || ok
		if err != nil {
			errs = append(errs, fmt.Errorf("root crl: %w", err))
		}
	}
	return built, errors.Join(errs...)
}

// nextNumber is the cRLNumber of a build at now: its microsecond, and
// above every number the scopes had.
func nextNumber(now time.Time, previous ...*PublishedCRL) int64 {
	n := now.UnixMicro()
	for _, c := range previous {
		if c != nil && c.Number >= n {
			n = c.Number + 1
		}
	}
	return n
}

// buildGeneration builds a generation's shards and full CRL. The full
// CRL is the shards' entries together, and is written last: replicas
// learn the shard count from it.
func (p *CRLPublisher) buildGeneration(ctx context.Context, iss *ca.Issuer, revision int64, published map[string]*PublishedCRL, now time.Time) (bool, error) {
	scope := GenerationScope(iss.Name, iss.Generation)
	shardCount := 1
	if c := published[scope]; c != nil && c.Shards > 1 {
		shardCount = c.Shards
	}
	shards := make([]*crlEntries, shardCount)
	for i := range shards {
		shards[i] = &crlEntries{}
	}
	total := 0
	err := p.Store.RevokedCertificates(ctx, iss.Name, iss.Generation, store.AllShards, now, func(e store.RevokedEntry) error {
		s := e.Shard
		if s < 0 {
			s = 0
		}
		for s >= len(shards) { // a shard from before the count was read
			shards = append(shards, &crlEntries{})
		}
		total++
		return shards[s].add(e)
	})
	if err != nil {
		return false, err
	}
	perShard := p.ShardEntries
	if perShard <= 0 {
		perShard = DefaultShardEntries
	}
	for total > shardCount*perShard && shardCount < 1<<12 {
		shardCount *= 2
	}
	for len(shards) < shardCount {
		shards = append(shards, &crlEntries{})
	}
	previous := []*PublishedCRL{published[scope]}
	for i := range shards {
		previous = append(previous, published[shardScope(iss.Name, iss.Generation, i)])
	}
	number := nextNumber(now, previous...)
	thisUpdate := now.Truncate(time.Second)
	spec := crlSpec{issuer: iss.Cert, signer: iss.Signer, number: number, thisUpdate: thisUpdate, nextUpdate: thisUpdate.Add(p.validity()), userOnly: true}
	full := &crlEntries{}
	full.join(shards...)
	for i, entries := range shards {
		if _, err := p.putShard(ctx, iss, i, spec, entries, revision); err != nil {
			return false, err
		}
	}
	spec.userOnly = false
	der, err := encodeCRL(spec, full)
	if err != nil {
		return false, err
	}
	ok, err := p.Store.PutCRL(ctx, store.CRLRecord{Scope: scope, Number: number, ThisUpdate: spec.thisUpdate, NextUpdate: spec.nextUpdate,
		Revision: revision, Shards: shardCount, DER: der})
	if err == nil && ok {
		p.log().Debug("crl: published", "scope", scope, "entries", full.count, "shards", len(shards), "number", number)
	}
	return ok, err
}

// putShard signs and stores one shard's CRL: spec with the shard's Issuing
// Distribution Point.
func (p *CRLPublisher) putShard(ctx context.Context, iss *ca.Issuer, shard int, spec crlSpec, entries *crlEntries, revision int64) (bool, error) {
	// Without a public URL no leaf names a shard; the IDP still scopes
	// it, by the path relying parties see.
	spec.distributionPoint = strings.TrimRight(p.BaseURL, "/") + "/crl/" + shardScope(iss.Name, iss.Generation, shard)
	spec.userOnly = true
	der, err := encodeCRL(spec, entries)
	if err != nil {
		return false, err
	}
	return p.Store.PutCRL(ctx, store.CRLRecord{Scope: shardScope(iss.Name, iss.Generation, shard), Number: spec.number,
		ThisUpdate: spec.thisUpdate, NextUpdate: spec.nextUpdate, Revision: revision, DER: der})
}

// Revoked tells the publisher that serial was revoked here: its shard's
// CRL is built again first, on its own, before the generation's full CRL
// and other shards (which take seconds at a million entries). The
// revocation Service calls it through OnRevoked.
func (p *CRLPublisher) Revoked(serial store.Serial) {
	p.init()
	p.pendingMu.Lock()
	if p.pending == nil {
		p.pending = map[store.Serial]struct{}{}
	}
	if len(p.pending) < maxPending {
		p.pending[serial] = struct{}{}
	}
	p.pendingMu.Unlock()
	p.Wake()
}

// maxPending bounds the serials whose shards are built first; a bigger
// burst waits for the full build.
const maxPending = 10000

// buildPendingShards builds the shards of the serials revoked here since
// the last cycle, and reports whether it published any.
func (p *CRLPublisher) buildPendingShards(ctx context.Context, now time.Time) (bool, error) {
	p.pendingMu.Lock()
	pending := p.pending
	p.pending = nil
	p.pendingMu.Unlock()
	if len(pending) == 0 {
		return false, nil
	}
	revision, err := p.Store.RevocationRevision(ctx)
	if err != nil {
		return false, err
	}
	type shardKey struct {
		name       string
		gen, shard int
	}
	todo := map[shardKey]bool{}
	for sn := range pending {
		c, err := p.Store.GetCertificate(ctx, sn)
		if err != nil || c.IssuerGeneration <= 0 {
			continue // the full build covers what cannot be placed
		}
		todo[shardKey{c.Issuer, c.IssuerGeneration, max(c.CRLShard, 0)}] = true
	}
	published := p.published.Load().byScope
	built := false
	var errs []error
	for _, iss := range p.Hierarchy.Issuers() {
		if !now.Before(iss.Cert.NotAfter) || published[GenerationScope(iss.Name, iss.Generation)] == nil {
			continue // no CRL yet: the full build makes them all
		}
		for k := range todo {
			if k.name != iss.Name || k.gen != iss.Generation {
				continue
			}
			entries := &crlEntries{}
			err := p.Store.RevokedCertificates(ctx, iss.Name, iss.Generation, k.shard, now, entries.add)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			thisUpdate := now.Truncate(time.Second)
			spec := crlSpec{issuer: iss.Cert, signer: iss.Signer, number: nextNumber(now, published[shardScope(iss.Name, iss.Generation, k.shard)]),
				thisUpdate: thisUpdate, nextUpdate: thisUpdate.Add(p.validity())}
			ok, err := p.putShard(ctx, iss, k.shard, spec, entries, revision)
			if err != nil {
				errs = append(errs, err)
			}
			built = built || ok
		}
	}
	return built, errors.Join(errs...)
}

// buildRoot builds the root's CRL of revoked intermediate generations.
func (p *CRLPublisher) buildRoot(ctx context.Context, issuers []*ca.Issuer, revision int64, published map[string]*PublishedCRL, now time.Time) (bool, error) {
	signer, err := p.Hierarchy.RootSigner(ctx)
	if errors.Is(err, ca.ErrRootOffline) {
		return false, nil // signed where the root is, if at all: docs/KEYS.md
	}
	if err != nil {
		return false, err
	}
	entries := &crlEntries{}
	for _, iss := range issuers {
		if iss.RevokedAt.IsZero() {
			continue
		}
		if err := entries.add(store.RevokedEntry{Serial: store.SerialOf(iss.Cert.SerialNumber), RevokedAt: iss.RevokedAt, Reason: iss.RevocationReason}); err != nil {
			return false, err
		}
	}
	thisUpdate := now.Truncate(time.Second)
	number := nextNumber(now, published[RootScope])
	der, err := encodeCRL(crlSpec{issuer: p.Hierarchy.Root(), signer: signer, number: number, thisUpdate: thisUpdate,
		nextUpdate: thisUpdate.Add(p.validity())}, entries)
	if err != nil {
		return false, err
	}
	return p.Store.PutCRL(ctx, store.CRLRecord{Scope: RootScope, Number: number, ThisUpdate: thisUpdate,
		NextUpdate: thisUpdate.Add(p.validity()), Revision: revision, DER: der})
}

// ErrNoCRL is Find's error for a path that names no published CRL.
var ErrNoCRL = errors.New("no such CRL")

// Find returns the CRL a path below /crl names, and whether it asks for
// PEM (a ".pem" suffix):
//
//	""                         the default intermediate's newest generation
//	NAME                       NAME's newest generation that may sign
//	NAME/GEN, NAME/GEN/SHARD   one generation, one shard of it
//	root                       the root's
func (p *CRLPublisher) Find(path string) (*PublishedCRL, bool, error) {
	p.init()
	path = strings.Trim(path, "/")
	asPEM := strings.HasSuffix(path, ".pem")
	path = strings.TrimSuffix(path, ".pem")
	if path == "" {
		path = ca.DefaultIssuerName
	}
	published := p.published.Load().byScope
	if !strings.Contains(path, "/") && path != RootScope {
		iss, err := p.Hierarchy.Issuer(path)
		if err != nil {
			return nil, false, fmt.Errorf("%w: no intermediate %q may sign now", ErrNoCRL, ca.Clip(path))
		}
		path = GenerationScope(iss.Name, iss.Generation)
	}
	if c := published[path]; c != nil {
		return c, asPEM, nil
	}
	return nil, false, fmt.Errorf("%w %q has been published", ErrNoCRL, ca.Clip(path))
}

// IssuerCertificate returns the DER certificate of the generation a path
// like "NAME/GEN.der" names, for AIA caIssuers.
func (p *CRLPublisher) IssuerCertificate(path string) ([]byte, error) {
	name, genText, ok := strings.Cut(strings.TrimSuffix(strings.Trim(path, "/"), ".der"), "/")
	gen, err := strconv.Atoi(genText)
	if ok && err == nil {
		for _, iss := range p.Hierarchy.Issuers() {
			if iss.Name == name && iss.Generation == gen {
				return iss.Cert.Raw, nil
			}
		}
	}
	return nil, fmt.Errorf("no intermediate certificate %q", ca.Clip(path))
}

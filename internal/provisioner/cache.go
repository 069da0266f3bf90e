package provisioner

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// Cache keeps compiled provisioner policies for a short time, so that the
// issuance path does not read the store on every request. It implements
// ca.Provisioners. A change made through a Service applies at once; one made
// on another replica sharing the store applies within the TTL.
type Cache struct {
	st  store.Provisioners
	ttl time.Duration
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]cachedEntry
	// byType lists each type's provisioners as of when it was read.
	byType map[store.ProvisionerType]cachedList
}

type cachedEntry struct {
	p       ca.CompiledProvisioner
	fetched time.Time
}

type cachedList struct {
	list    []ca.CompiledProvisioner
	fetched time.Time
}

func (e cachedEntry) fetchedAt() time.Time { return e.fetched }
func (l cachedList) fetchedAt() time.Time  { return l.fetched }

// lookup returns m[k] if it was fetched less than the TTL before now.
func lookup[K comparable, V interface{ fetchedAt() time.Time }](c *Cache, m map[K]V, k K, now time.Time) (V, bool) {
	c.mu.RLock()
	v, ok := m[k]
	c.mu.RUnlock()
	return v, ok && now.Sub(v.fetchedAt()) < c.ttl
}

// DefaultTTL is how long a provisioner read from the store is trusted.
const DefaultTTL = 2 * time.Second

// NewCache returns a Cache over st; ttl 0 means DefaultTTL and now nil
// means time.Now.
func NewCache(st store.Provisioners, ttl time.Duration, now func() time.Time) *Cache {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{st: st, ttl: ttl, now: now, entries: map[string]cachedEntry{}, byType: map[store.ProvisionerType]cachedList{}}
}

// Provisioner returns the named provisioner; store.ErrNotFound when absent.
func (c *Cache) Provisioner(ctx context.Context, name string) (ca.CompiledProvisioner, error) {
	now := c.now()
	if e, ok := lookup(c, c.entries, name, now); ok {
		return e.p, nil
	}
	p, err := c.st.GetProvisioner(ctx, name)
	if err != nil {
		c.Invalidate(name)
		return ca.CompiledProvisioner{}, err
	}
	cp, err := compile(p)
	if err != nil {
		return ca.CompiledProvisioner{}, err
	}
	c.mu.Lock()
	c.entries[name] = cachedEntry{cp, now}
	c.mu.Unlock()
	return cp, nil
}

// OfType returns the provisioners of type typ, in name order; SVID minting
// asks for the spiffe ones at every SVID.
func (c *Cache) OfType(ctx context.Context, typ store.ProvisionerType) ([]ca.CompiledProvisioner, error) {
	now := c.now()
	if l, ok := lookup(c, c.byType, typ, now); ok {
		return l.list, nil
	}
	all, err := c.st.ListProvisioners(ctx)
	if err != nil {
		return nil, err
	}
	var list []ca.CompiledProvisioner
	for _, p := range all {
		if p.Type != typ {
			continue
		}
		cp, err := compile(p)
		if err != nil {
			return nil, err
		}
		list = append(list, cp)
	}
	c.mu.Lock()
	c.byType[typ] = cachedList{list, now}
	c.mu.Unlock()
	return list, nil
}

// Invalidate forgets what the Cache knows of name, and every list by type.
func (c *Cache) Invalidate(name string) {
	c.mu.Lock()
	delete(c.entries, name)
	clear(c.byType)
	c.mu.Unlock()
}

func compile(p store.Provisioner) (ca.CompiledProvisioner, error) {
	compiled, err := policy.Compile(p.Policy)
	if err != nil {
		return ca.CompiledProvisioner{}, fmt.Errorf("provisioner %q has an invalid policy: %w", p.Name, err)
	}
	return ca.CompiledProvisioner{Provisioner: p, Policy: compiled}, nil
}

package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// Entry is a SPIFFE registration entry: which workloads, on which nodes,
// get which SPIFFE ID.
type Entry struct {
	ID       string // random, chosen by the caller
	SPIFFEID string
	// Parent is the SPIFFE ID of the node(s) the entry applies to, or a node
	// selector "type:value…" (e.g. "x509pop:subject:cn:web-1") that a node's
	// attestation selectors must include.
	Parent    string
	Selectors []string // workload selectors, e.g. "unix:uid:1000"; all must match
	X509TTL   time.Duration
	JWTTTL    time.Duration
	DNSNames  []string
	Hint      string
	// Revision is the store-wide change sequence number of the entry's last
	// change; set by the store.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// EntryChange is one change in the entry log: the entry as it is after the
// change, or Deleted with only its ID and Parent set.
type EntryChange struct {
	Revision int64
	Entry    Entry
	Deleted  bool
}

// Entries stores registration entries. Every create, update and delete
// takes the next value of one store-wide revision counter, so that agents
// can ask for "what changed since revision R" instead of re-reading
// everything.
type Entries interface {
	EntryReader
	// CreateEntry adds e (ErrConflict if its ID exists, or another entry has
	// the same SPIFFE ID, parent and selectors) and appends ev. It returns
	// the revision given to it.
	CreateEntry(ctx context.Context, e Entry, ev audit.Event) (int64, error)
	// UpdateEntry replaces every field of entry e.ID but CreatedAt
	// (ErrNotFound if absent; ErrConflict as for create) and appends ev.
	UpdateEntry(ctx context.Context, e Entry, ev audit.Event) (int64, error)
	// DeleteEntry removes an entry (ErrNotFound if absent) and appends ev.
	DeleteEntry(ctx context.Context, id string, ev audit.Event) (int64, error)
}

// EntryReader reads registration entries and their change log. Only
// package registration writes entries.
type EntryReader interface {
	// GetEntry returns the entry or ErrNotFound.
	GetEntry(ctx context.Context, id string) (Entry, error)
	// ListEntries returns entries ordered by ID after the ID after ("" for
	// the first page), at most limit (0 means 100, capped at 1000),
	// optionally only those with this SPIFFE ID or parent ("" for any).
	ListEntries(ctx context.Context, f EntryFilter) ([]Entry, error)
	// EntryChanges returns the changes with a revision above since, oldest
	// first, at most limit (0 means 1000), and the current revision. A
	// deleted entry's change keeps its ID and Parent. Changes older than the
	// retention may be gone: when since is below the oldest kept revision,
	// ErrRevisionGone is returned and the caller reads everything again.
	EntryChanges(ctx context.Context, since int64, limit int) (changes []EntryChange, current int64, err error)
	// EntryRevision returns the current revision (0 before any change).
	EntryRevision(ctx context.Context) (int64, error)
}

// EntryFilter selects entries for ListEntries.
type EntryFilter struct {
	SPIFFEID string
	Parent   string
	After    string
	Limit    int
}

// Node is an attested node (agent).
type Node struct {
	SPIFFEID string
	// Attestation is how the node proved itself: "join_token" or "x509pop".
	Attestation string
	// Selectors describe the node, e.g. "x509pop:subject:cn:web-1",
	// "x509pop:ca:fingerprint:<sha256 hex>"; entries whose Parent is a
	// selector match nodes carrying it.
	Selectors []string
	// CertSerial is the serial of the node's current node SVID.
	CertSerial Serial
	Evicted    bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// NodeReader reads attested nodes.
type NodeReader interface {
	// GetNode returns the node or ErrNotFound.
	GetNode(ctx context.Context, spiffeID string) (Node, error)
	// ListNodes returns every node ordered by SPIFFE ID.
	ListNodes(ctx context.Context) ([]Node, error)
}

// Nodes stores attested nodes. The issuance path records a node with its
// node SVID; package registration evicts.
type Nodes interface {
	NodeReader
	// PutNode creates or replaces a node record and appends ev. A node that
	// is evicted stays evicted: ErrStateChanged, nothing written.
	PutNode(ctx context.Context, n Node, ev audit.Event) error
	// EvictNode marks a node evicted (ErrNotFound if absent) and appends ev.
	EvictNode(ctx context.Context, spiffeID string, ev audit.Event) error
}

package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// InventorySource says where the inventory knows a certificate from.
type InventorySource string

// The inventory sources.
const (
	SourceIssued  InventorySource = "issued"  // meshpki issued it (the certificates table)
	SourceScanned InventorySource = "scanned" // a scan saw it at an endpoint or in a file
)

// StoredFinding is one check's finding as the inventory keeps it.
type StoredFinding struct {
	Check       string `json:"check"`
	Severity    string `json:"severity"`
	Message     string `json:"message"`
	Certificate int    `json:"certificate"` // index in the chain; 0 is the leaf
}

// Observation is one certificate chain a scan saw at one location.
type Observation struct {
	// Scope is the target the location was found under, as the user gave
	// it: "10.0.0.0/28:443", "/etc/ssl/private", "db:5432".
	Scope string
	// Location is where it was seen: an endpoint ("host:port") or a file.
	Location string
	// Chain is the chain as presented or held, DER, leaf first.
	Chain [][]byte
	// Fingerprint is the lowercase hex SHA-256 of Chain[0].
	Fingerprint string
	Serial      Serial
	Subject     string   // the leaf's subject DN
	IssuerDN    string   // the leaf's issuer DN
	Names       []string // the leaf's SANs as text
	NotBefore   time.Time
	NotAfter    time.Time
	// Findings are the checks' findings at this location that do not move
	// with time (chain, hostname, key, signature, lint); the inventory
	// works out the time-bound ones (expiry) when it is read.
	Findings []StoredFinding
	// IssuedSerial is the serial of the meshpki certificate this leaf is,
	// or "" for a certificate from elsewhere.
	IssuedSerial Serial
	// Labels are the labels of the scan that saw it (team=payments…).
	Labels map[string]string
}

// ScanRun is what one run of a scan saw.
type ScanRun struct {
	// At is when the run happened.
	At time.Time
	// Scopes are every target scanned, whether or not it yielded anything:
	// a sighting under one of them not seen for Hold is no longer current
	// (the endpoint now presents something else, the file is gone).
	Scopes []string
	// Hold is how long a certificate a location stopped presenting stays
	// current there, and how long the newest certificate seen at a
	// location wins over older ones seen since: a rollout that alternates
	// an old and a new certificate does not make either come and go.
	Hold         time.Duration
	Observations []Observation
}

// InventoryItem is one certificate the inventory knows, from either source.
type InventoryItem struct {
	Source      InventorySource
	Fingerprint string // lowercase hex SHA-256 of the leaf; scanned items only
	Serial      Serial
	Subject     string   // DN for scanned items, common name for issued ones
	Issuer      string   // issuer DN (scanned) or meshpki issuer name (issued)
	Provisioner string   // issued items
	Names       []string //
	NotBefore   time.Time
	NotAfter    time.Time
	// Chain is DER, leaf first: as last seen (scanned), the leaf alone
	// (issued).
	Chain [][]byte
	// Findings are the time-independent findings of the latest sighting
	// (scanned items).
	Findings []StoredFinding
	// Status is the record's status (issued items): valid or revoked.
	Status Status
	// Active: a scanned certificate is current at some location; an issued
	// one is valid and not replaced.
	Active bool
	// Replaced: an issued certificate has been renewed, or issued again
	// since under the same provisioner for the same subject and names (and
	// that one is valid), as agents re-mint SVIDs.
	Replaced bool
	// IssuedSerial is set on a scanned item that meshpki issued.
	IssuedSerial Serial
	// Labels of the latest scan that saw a scanned item.
	Labels    map[string]string
	FirstSeen time.Time // scan: first sighting; issued: issuance
	LastSeen  time.Time // scan: last sighting; issued: issuance
}

// Sighting is where and when a scanned certificate was seen.
type Sighting struct {
	Scope     string
	Location  string
	FirstSeen time.Time
	LastSeen  time.Time
	Current   bool
	Findings  []StoredFinding
}

// InventoryFilter selects inventory items. Zero fields match all.
type InventoryFilter struct {
	// Source is "" for both. A scanned certificate meshpki issued is
	// listed under SourceScanned, and with "" as the issued item alone.
	Source         InventorySource
	Name           string    // exact match on the subject common name or any SAN
	ExpiringBefore time.Time // NotAfter before this
	// Active keeps only active items (see InventoryItem.Active).
	Active bool
	// Issuer keeps items of this issuer: an intermediate's name for issued
	// items, the issuer DN for scanned ones.
	Issuer string
	// Provisioner keeps issued items of this provisioner (and no scanned
	// ones).
	Provisioner string
	// Serial keeps items with this serial (lowercase hex).
	Serial Serial
	// Status keeps valid (unexpired and, if issued, not revoked), revoked
	// (issued only) or expired items, at Now.
	Status Status
	// RenewalOverdue keeps unexpired items past two thirds of their
	// lifetime at Now.
	RenewalOverdue bool
	// IssuedSince keeps issued items recorded at or after it (and no
	// scanned ones).
	IssuedSince time.Time
	Now         time.Time
	// WithFindings keeps only scanned items that carry stored findings or
	// that meshpki issued (whose revocation is a finding).
	WithFindings bool
	// LatestFirst lists in the reverse order: latest expiry first.
	LatestFirst bool
	After       string // page cursor: the Next of the previous page
	Limit       int    // page size; 0 means 100, capped at 1000
}

// InventoryPage is one page of the inventory, soonest expiry first; Next is
// "" on the last page.
type InventoryPage struct {
	Items []InventoryItem
	Next  string
}

// Inventory keeps what scans saw, and lists it with what meshpki issued.
type Inventory interface {
	InventoryReader
	// RecordScan adds what a run saw: each chain once by its leaf's
	// fingerprint, its sighting at each location, and which certificates
	// are current where (see ScanRun). It is one transaction.
	RecordScan(ctx context.Context, run ScanRun) error
}

// InventoryReader reads the inventory.
type InventoryReader interface {
	// ListInventory returns one page ordered by NotAfter, then source
	// (issued first), then the order items were first recorded; or in
	// exactly the reverse order with f.LatestFirst.
	ListInventory(ctx context.Context, f InventoryFilter) (InventoryPage, error)
	// CountInventory counts the items f selects, f.After and f.Limit
	// aside.
	CountInventory(ctx context.Context, f InventoryFilter) (int, error)
	// InventoryExpiries counts the items f selects that expired before
	// now, and those expiring in each of n buckets of width from now
	// (f.ExpiringBefore, f.After and f.Limit aside).
	InventoryExpiries(ctx context.Context, f InventoryFilter, now time.Time, width time.Duration, n int) (expired int, buckets []int, err error)
	// GetScanned returns a scanned certificate by its fingerprint with its
	// sightings (latest first), or ErrNotFound.
	GetScanned(ctx context.Context, fingerprint string) (InventoryItem, []Sighting, error)
}

// ScanSchedule is a scan the server runs on its own, every Every.
type ScanSchedule struct {
	Name    string
	Targets []string
	Every   time.Duration
	// Options are the scan options as JSON (thresholds, timeout, SNI…),
	// kept as the monitor package writes them.
	Options   []byte
	NextRun   time.Time
	LastRun   time.Time // zero until it has run
	LastError string
	CreatedAt time.Time
}

// ScanSchedules stores scan schedules. Changes append their audit event in
// the same transaction.
type ScanSchedules interface {
	// CreateSchedule returns ErrConflict if the name exists.
	CreateSchedule(ctx context.Context, s ScanSchedule, ev audit.Event) error
	// DeleteSchedule returns ErrNotFound if absent.
	DeleteSchedule(ctx context.Context, name string, ev audit.Event) error
	// ListSchedules returns every schedule ordered by name.
	ListSchedules(ctx context.Context) ([]ScanSchedule, error)
	// ClaimDueSchedule moves the next run of one schedule due at now (the
	// one due longest) to now+Every and returns it so; ErrNotFound when
	// none is due. Replicas claim each run once.
	ClaimDueSchedule(ctx context.Context, now time.Time) (ScanSchedule, error)
	// DueNow makes a schedule due at now (a run on demand); ErrNotFound if
	// absent.
	DueNow(ctx context.Context, name string, now time.Time) error
	// FinishSchedule records the outcome of a run claimed at ranAt.
	FinishSchedule(ctx context.Context, name string, ranAt time.Time, runErr string) error
	// ReleaseSchedules makes every schedule claimed and not finished due
	// at now, and returns how many: the runs a leader that died left
	// unfinished, which the next leader runs at once.
	ReleaseSchedules(ctx context.Context, now time.Time) (int, error)
}

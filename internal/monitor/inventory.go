package monitor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

// InventoryStore is what the inventory reads and writes.
type InventoryStore interface {
	store.Inventory
	store.CertificateReader
}

// DefaultHold is how long a certificate an endpoint stopped presenting
// stays current there when a scan does not say otherwise (see
// store.ScanRun.Hold).
const DefaultHold = time.Hour

// Inventory is every certificate meshpki knows: those it issued and those
// scans saw. It records scan results and lists certificates with their
// findings as of now.
type Inventory struct {
	Store InventoryStore
	// Policy runs the checks on reported chains and the time-bound checks
	// when the inventory is read (required).
	Policy *Policy
}

// Item is an inventory item with its findings as of now.
type Item struct {
	store.InventoryItem
	Findings  []Finding
	Sightings []store.Sighting // GetScanned only
}

// Fingerprint256 is the inventory's key of a certificate: the lowercase hex
// SHA-256 of its DER.
func Fingerprint256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Covered lists the scopes of results that a run saw whole: those none of
// whose targets failed. A target that failed says nothing about what it
// presents, so what was seen under its scope stays as it was.
func Covered(results []Result) []string {
	failed := map[string]bool{}
	var scopes []string
	for _, r := range results {
		if r.Scope == "" {
			continue
		}
		if r.Error != "" && !r.Silent {
			failed[r.Scope] = true
		}
		if !slices.Contains(scopes, r.Scope) {
			scopes = append(scopes, r.Scope)
		}
	}
	out := scopes[:0]
	for _, s := range scopes {
		if !failed[s] {
			out = append(out, s)
		}
	}
	return out
}

// Record adds what a scan run saw at at. scopes are the targets the run
// covered (see Covered); hold is store.ScanRun.Hold (DefaultHold if zero);
// labels are the run's (see CheckLabels). It returns how many chains were
// recorded.
func (inv *Inventory) Record(ctx context.Context, at time.Time, scopes []string, hold time.Duration, labels map[string]string, results []Result) (int, error) {
	if hold <= 0 {
		hold = DefaultHold
	}
	run := store.ScanRun{At: at, Scopes: scopes, Hold: hold}
	for _, r := range results {
		if len(r.Certs) == 0 {
			continue
		}
		leaf := r.Certs[0]
		o := store.Observation{
			Scope:       r.Scope,
			Location:    r.Target,
			Fingerprint: Fingerprint256(leaf),
			Serial:      store.SerialOf(leaf.SerialNumber),
			Subject:     leaf.Subject.String(),
			IssuerDN:    leaf.Issuer.String(),
			Names:       Names(leaf),
			NotBefore:   leaf.NotBefore,
			NotAfter:    leaf.NotAfter,
			Findings:    []store.StoredFinding{},
			Labels:      labels,
		}
		if o.Scope == "" {
			o.Scope = r.Target
		}
		for _, c := range r.Certs {
			o.Chain = append(o.Chain, c.Raw)
		}
		for _, f := range r.Findings {
			if !TimeBound(f.Check) {
				o.Findings = append(o.Findings, store.StoredFinding{Check: f.Check, Severity: f.Severity.String(), Message: f.Message, Certificate: f.Certificate})
			}
		}
		ours, err := inv.Store.GetCertificate(ctx, o.Serial)
		switch {
		case err == nil && bytes.Equal(ours.DER, leaf.Raw):
			o.IssuedSerial = o.Serial
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return 0, err
		}
		run.Observations = append(run.Observations, o)
	}
	if err := inv.Store.RecordScan(ctx, run); err != nil {
		return 0, err
	}
	return len(run.Observations), nil
}

// List returns one page of the inventory with each item's findings.
func (inv *Inventory) List(ctx context.Context, f store.InventoryFilter) ([]Item, string, error) {
	page, err := inv.Store.ListInventory(ctx, f)
	if err != nil {
		return nil, "", err
	}
	out := make([]Item, 0, len(page.Items))
	cache := ChainCache{}
	for _, it := range page.Items {
		findings, err := inv.FindingsWith(ctx, it, cache)
		if err != nil {
			return nil, "", err
		}
		out = append(out, Item{InventoryItem: it, Findings: findings})
	}
	return out, page.Next, nil
}

// GetScanned returns a scanned certificate with its findings and sightings.
func (inv *Inventory) GetScanned(ctx context.Context, fingerprint string) (Item, error) {
	it, sightings, err := inv.Store.GetScanned(ctx, fingerprint)
	if err != nil {
		return Item{}, err
	}
	findings, err := inv.Findings(ctx, it)
	if err != nil {
		return Item{}, err
	}
	return Item{InventoryItem: it, Findings: findings, Sightings: sightings}, nil
}

// Findings are an item's findings as of now: those its latest sighting
// found, the time-bound checks now (for an active item only: a certificate
// replaced or no longer presented anywhere will not be served when it
// expires), and revoked for a certificate meshpki issued and revoked.
func (inv *Inventory) Findings(ctx context.Context, it store.InventoryItem) ([]Finding, error) {
	return inv.FindingsWith(ctx, it, ChainCache{})
}

// ChainCache keeps the chain certificates (intermediates, roots) parsed
// while findings of many items are worked out: a fleet shares a few.
type ChainCache map[string]*x509.Certificate

// FindingsWith is Findings with chain certificates parsed through cache.
func (inv *Inventory) FindingsWith(ctx context.Context, it store.InventoryItem, cache ChainCache) ([]Finding, error) {
	var out []Finding
	for _, f := range it.Findings {
		sev, err := ParseSeverity(f.Severity)
		if err != nil {
			continue // written by a newer meshpki; not ours to judge
		}
		out = append(out, Finding{Check: f.Check, Severity: sev, Message: f.Message, Certificate: f.Certificate})
	}
	if it.Active {
		chain := []*x509.Certificate{{NotBefore: it.NotBefore, NotAfter: it.NotAfter}}
		for _, der := range it.Chain[min(1, len(it.Chain)):] {
			c, ok := cache[string(der)]
			if !ok {
				var err error
				if c, err = x509.ParseCertificate(der); err != nil {
					break
				}
				cache[string(der)] = c
			}
			chain = append(chain, c)
		}
		out = append(out, inv.Policy.Timely(chain)...)
	}
	status, at, reason := it.Status, time.Time{}, 0
	if it.Source == store.SourceScanned && it.IssuedSerial != "" {
		c, err := inv.Store.GetCertificate(ctx, it.IssuedSerial)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		status, at, reason = c.Status, c.RevokedAt, c.RevocationReason
	} else if it.Source == store.SourceIssued && status == store.StatusRevoked {
		c, err := inv.Store.GetCertificate(ctx, it.Serial)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		at, reason = c.RevokedAt, c.RevocationReason
	}
	if status == store.StatusRevoked && !slices.ContainsFunc(out, func(f Finding) bool { return f.Check == CheckRevoked && f.Severity == Critical }) {
		out = append(out, Finding{Check: CheckRevoked, Severity: Critical,
			Message: fmt.Sprintf("the certificate was revoked by meshpki %s ago (%s)", duration.Format(inv.Policy.now().Sub(at)), revocation.Reason(reason))})
	}
	SortFindings(out)
	if out == nil {
		out = []Finding{}
	}
	return out, nil
}

// Limits of labels.
const (
	maxLabels          = 16
	maxLabelValueBytes = 256
)

// CheckLabels checks labels a scan gives what it sees: at most 16, names
// as Prometheus takes them ([a-zA-Z_][a-zA-Z0-9_]*, at most 64 bytes),
// values of at most 256 bytes. Alert rules select by them, and alerts carry
// them, so that a receiver routes by team.
func CheckLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels: at most %d", len(labels), maxLabels)
	}
	for k, v := range labels {
		if !labelName(k) {
			return fmt.Errorf("label name %q: use letters, digits and '_', not starting with a digit (at most 64)", clip(k))
		}
		if len(v) > maxLabelValueBytes {
			return fmt.Errorf("label %s: a value of at most %d bytes", k, maxLabelValueBytes)
		}
	}
	return nil
}

func labelName(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ParseLabels reads NAME=VALUE arguments (--label team=payments).
func ParseLabels(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: use NAME=VALUE", clip(a))
		}
		out[k] = v
	}
	return out, CheckLabels(out)
}

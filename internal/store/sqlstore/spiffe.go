package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// Registration entries and their revisions.
//
// Every entry change takes the next value of the one-row counter
// spiffe_revision in the transaction that makes it, and records it in the
// entry's row (creates and updates) or in a row of spiffe_entry_deletions
// (deletes). Entry writers run under lockedTx, so they take the audit head
// first and the counter second, always in that order, and commit one at a
// time in revision order in every replica: a reader that sees revision R
// sees every change up to R.
//
// The change log is compacted as it is written: an entry's row holds its
// latest change alone, its delete replaces its earlier delete, and its
// create removes its delete. EntryChanges therefore reports each entry once
// however often it changed after since, as it is now, at the revision of its
// latest change. Entry rows are never pruned; deletions are kept for
// entryDeletionsKept revisions, and pruned every entryPruneInterval
// revisions in the write that reaches it; spiffe_revision.pruned records the
// highest revision of a deletion pruned, below which EntryChanges answers
// store.ErrRevisionGone.

// Retention of deletions. Tests in this package shorten them; nothing else
// changes them.
var (
	// entryDeletionsKept is how many revisions a deletion is remembered.
	entryDeletionsKept int64 = 100_000
	// entryPruneInterval is how often, in revisions, deletions are pruned.
	entryPruneInterval int64 = 1000
)

// Page sizes of ListEntries and EntryChanges.
const (
	defaultEntryPage  = 100
	maxEntryPage      = 1000
	defaultChangePage = 1000
)

// entryColumns are the columns scanEntry reads, in order.
const entryColumns = `id, spiffe_id, parent, selectors, x509_ttl, jwt_ttl, dns_names, hint, revision, created_at, updated_at`

// Statements of the entry writes, constant for the SQLite writer.
const (
	// nextEntryRevision takes the next revision; on PostgreSQL it locks
	// the counter's row until commit.
	nextEntryRevision = `UPDATE spiffe_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision, pruned`
	insertEntry       = `INSERT INTO spiffe_entries (` + entryColumns + `, identity)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`
	// updateEntry changes nothing when another entry has the identity.
	updateEntry = `UPDATE spiffe_entries SET spiffe_id = $2, parent = $3, selectors = $4, x509_ttl = $5, jwt_ttl = $6,
			dns_names = $7, hint = $8, revision = $9, updated_at = $10, identity = $11
		WHERE id = $1 AND NOT EXISTS (
			SELECT 1 FROM spiffe_entries AS other WHERE other.identity = $11 AND other.id <> $1)`
	entryExists         = `SELECT count(*) FROM spiffe_entries WHERE id = $1`
	deleteEntry         = `DELETE FROM spiffe_entries WHERE id = $1 RETURNING parent`
	forgetEntryDeletion = `DELETE FROM spiffe_entry_deletions WHERE entry_id = $1`
	recordEntryDeletion = `INSERT INTO spiffe_entry_deletions (entry_id, parent, revision) VALUES ($1, $2, $3)
		ON CONFLICT (entry_id) DO UPDATE SET parent = excluded.parent, revision = excluded.revision`
	lastPrunableDeletion = `SELECT coalesce(max(revision), 0) FROM spiffe_entry_deletions WHERE revision <= $1`
	pruneEntryDeletions  = `DELETE FROM spiffe_entry_deletions WHERE revision <= $1`
	movePruned           = `UPDATE spiffe_revision SET pruned = $1 WHERE id = 1`
)

// entryRow is an entry encoded for writing.
type entryRow struct {
	e         store.Entry
	selectors string
	dnsNames  string
	identity  []byte
}

// encodeEntry checks and encodes e. Selectors are kept as a set: sorted,
// without duplicates.
// encodeEntryChange encodes entry e and the audit event of its change,
// what.
func encodeEntryChange(what string, e store.Entry, ev audit.Event) (entryRow, []pendingEvent, error) {
	row, err := encodeEntry(e)
	if err != nil {
		return entryRow{}, nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return entryRow{}, nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return row, events, nil
}

func encodeEntry(e store.Entry) (entryRow, error) {
	if e.ID == "" || e.SPIFFEID == "" || e.Parent == "" {
		return entryRow{}, errors.New("empty id, spiffe id or parent")
	}
	sel := slices.Clone(e.Selectors)
	slices.Sort(sel)
	e.Selectors = slices.Compact(sel)
	selectors, err := jsonList(e.Selectors)
	if err != nil {
		return entryRow{}, fmt.Errorf("encode selectors: %w", err)
	}
	dnsNames, err := jsonList(e.DNSNames)
	if err != nil {
		return entryRow{}, fmt.Errorf("encode dns names: %w", err)
	}
	// JSON of the three as one array: no two triples share an encoding.
	triple, err := json.Marshal([]any{e.SPIFFEID, e.Parent, e.Selectors})
	if err != nil {
		return entryRow{}, fmt.Errorf("encode identity: %w", err)
	}
	identity := sha256.Sum256(triple)
	return entryRow{e: e, selectors: selectors, dnsNames: dnsNames, identity: identity[:]}, nil
}

// args are the values of entryColumns and identity, with the revision rev.
func (r entryRow) args(rev int64) []any {
	e := r.e
	return []any{e.ID, e.SPIFFEID, e.Parent, r.selectors, e.X509TTL.Microseconds(), e.JWTTTL.Microseconds(),
		r.dnsNames, e.Hint, rev, micros(e.CreatedAt), micros(e.UpdatedAt), r.identity}
}

// jsonList encodes a list as a JSON array, nil as [].
func jsonList(list []string) (string, error) {
	if len(list) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(list)
	return string(b), err
}

// decodeList decodes a JSON array, [] as nil.
func decodeList(text string) ([]string, error) {
	if text == "[]" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal([]byte(text), &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

// entryTx runs fn, an entry change, under the write lock with the next
// revision, and appends events. fn's error rolls back the revision with
// the rest.
func (s *Store) entryTx(ctx context.Context, what string, events []pendingEvent, fn func(w writer, rev int64) error) (int64, error) {
	var rev int64
	err := s.lockedTx(ctx, what, func(w writer, emit emitFunc) error {
		var pruned int64
		if err := w.queryRow(ctx, nextEntryRevision, nil, &rev, &pruned); err != nil {
			return fmt.Errorf("next entry revision: %w", err)
		}
		if err := fn(w, rev); err != nil {
			return err
		}
		if err := pruneDeletions(ctx, w, rev, pruned); err != nil {
			return err
		}
		emit(events...)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// pruneDeletions forgets the deletions entryDeletionsKept revisions older
// than rev, when rev is a multiple of entryPruneInterval, and records the
// highest revision forgotten.
func pruneDeletions(ctx context.Context, w writer, rev, pruned int64) error {
	cut := rev - entryDeletionsKept
	if rev%entryPruneInterval != 0 || cut <= pruned {
		return nil
	}
	var last int64
	if err := w.queryRow(ctx, lastPrunableDeletion, []any{cut}, &last); err != nil {
		return fmt.Errorf("prune entry deletions: %w", err)
	}
	if last == 0 {
		return nil
	}
	if _, err := w.exec(ctx, pruneEntryDeletions, last); err != nil {
		return fmt.Errorf("prune entry deletions: %w", err)
	}
	if _, err := w.exec(ctx, movePruned, last); err != nil {
		return fmt.Errorf("prune entry deletions: %w", err)
	}
	return nil
}

// CreateEntry adds e and appends ev, and returns the revision given to it.
// store.ErrConflict if its ID exists or another entry has the same SPIFFE
// ID, parent and selectors (as a set). A zero CreatedAt records now and a
// zero UpdatedAt CreatedAt; e.Revision is ignored.
func (s *Store) CreateEntry(ctx context.Context, e store.Entry, ev audit.Event) (int64, error) {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = e.CreatedAt
	}
	what := "create entry " + e.ID
	row, events, err := encodeEntryChange(what, e, ev)
	if err != nil {
		return 0, err
	}
	return s.entryTx(ctx, what, events, func(w writer, rev int64) error {
		res, err := w.exec(ctx, insertEntry, row.args(rev)...)
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrConflict); err != nil {
			return fmt.Errorf("id taken, or an entry for %s with the same parent and selectors exists: %w", e.SPIFFEID, err)
		}
		// An entry created again under the id of a deleted one: its
		// create is its latest change.
		_, err = w.exec(ctx, forgetEntryDeletion, e.ID)
		return err
	})
}

// UpdateEntry replaces every field of entry e.ID but CreatedAt, sets its
// UpdatedAt (now when zero), appends ev, and returns the revision given to
// the change. store.ErrNotFound if absent; store.ErrConflict if another
// entry has the same SPIFFE ID, parent and selectors.
func (s *Store) UpdateEntry(ctx context.Context, e store.Entry, ev audit.Event) (int64, error) {
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = s.now()
	}
	what := "update entry " + e.ID
	row, events, err := encodeEntryChange(what, e, ev)
	if err != nil {
		return 0, err
	}
	return s.entryTx(ctx, what, events, func(w writer, rev int64) error {
		res, err := w.exec(ctx, updateEntry, e.ID, e.SPIFFEID, e.Parent, row.selectors,
			e.X509TTL.Microseconds(), e.JWTTTL.Microseconds(), row.dnsNames, e.Hint, rev, micros(e.UpdatedAt), row.identity)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var exists int64
		if err := w.queryRow(ctx, entryExists, []any{e.ID}, &exists); err != nil {
			return err
		}
		if exists == 0 {
			return store.ErrNotFound
		}
		return fmt.Errorf("an entry for %s with the same parent and selectors exists: %w", e.SPIFFEID, store.ErrConflict)
	})
}

// DeleteEntry removes an entry, appends ev, and returns the revision given
// to the deletion; store.ErrNotFound if absent.
func (s *Store) DeleteEntry(ctx context.Context, id string, ev audit.Event) (int64, error) {
	what := "delete entry " + id
	events, err := encodeEvent(ev)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return s.entryTx(ctx, what, events, func(w writer, rev int64) error {
		var parent string
		err := w.queryRow(ctx, deleteEntry, []any{id}, &parent)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = w.exec(ctx, recordEntryDeletion, id, parent, rev)
		return err
	})
}

// GetEntry returns the entry or store.ErrNotFound. Its Selectors are sorted.
func (s *Store) GetEntry(ctx context.Context, id string) (store.Entry, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM spiffe_entries WHERE id = $1`, id)
	return getOne(row, func(row scanner) (store.Entry, error) { return scanEntry(row) }, "entry "+id)
}

// ListEntries returns entries ordered by ID (in byte order) after f.After,
// at most f.Limit (0 or less means 100; capped at 1000), those with
// f.SPIFFEID and f.Parent when set.
func (s *Store) ListEntries(ctx context.Context, f store.EntryFilter) ([]store.Entry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultEntryPage
	}
	limit = min(limit, maxEntryPage)
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.SPIFFEID != "" {
		add("spiffe_id = $%d", f.SPIFFEID)
	}
	if f.Parent != "" {
		add("parent = $%d", f.Parent)
	}
	if f.After != "" {
		add("id > $%d", f.After)
	}
	query := `SELECT ` + entryColumns + ` FROM spiffe_entries`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	query += fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args))
	return queryAll(ctx, s.read, "list entries", func(row scanner) (store.Entry, error) { return scanEntry(row) }, query, args...)
}

// entryChanges reads the counter and the changes after $1 in one
// statement, so as of one moment, in one round trip. Its rows are those of
// entryColumns followed by kind, current and pruned, in revision order: first
// the counter's (kind 2, revision -1, with current and pruned), then the
// merge of two range scans, entries (kind 0) and deletions (kind 1, with
// only id, parent and revision). $2 is the number of changes wanted plus one.
const entryChanges = `SELECT '' AS id, '' AS spiffe_id, '' AS parent, '[]' AS selectors, 0 AS x509_ttl, 0 AS jwt_ttl,
		'[]' AS dns_names, '' AS hint, -1 AS revision, 0 AS created_at, 0 AS updated_at,
		2 AS kind, revision AS current_revision, pruned
	FROM spiffe_revision WHERE id = 1
	UNION ALL
	SELECT ` + entryColumns + `, 0, 0, 0 FROM spiffe_entries WHERE revision > $1
	UNION ALL
	SELECT entry_id, '', parent, '[]', 0, 0, '[]', '', revision, 0, 0, 1, 0, 0 FROM spiffe_entry_deletions WHERE revision > $1
	ORDER BY revision LIMIT $2`

// Kinds of the rows of entryChanges.
const (
	changeEntry    = 0
	changeDeletion = 1
	changeCounter  = 2
)

// EntryChanges returns the changes with a revision above since, oldest
// first, at most limit (0 or less means 1000, and there is no cap), and the
// current revision, all as of one moment. An entry changed more than once
// after since is reported once, as it is now, at the revision of its latest
// change; an entry deleted and created again under its id, as created. The
// next call should pass the revision of the last change returned, or current
// when fewer than limit were.
//
// store.ErrRevisionGone when the deletions after since are no longer all
// kept, or since is above the current revision (the database was restored
// from an older backup). A since of 0 or less is never refused: a caller
// with nothing has no deletion to learn of.
func (s *Store) EntryChanges(ctx context.Context, since int64, limit int) ([]store.EntryChange, int64, error) {
	if limit <= 0 {
		limit = defaultChangePage
	}
	rows, err := s.read.QueryContext(ctx, entryChanges, since, int64(limit)+1)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: entry changes: %w", err)
	}
	defer rows.Close()
	var (
		changes         []store.EntryChange
		current, pruned int64
		counterRead     bool
	)
	for rows.Next() {
		var (
			kind                  int
			rowCurrent, rowPruned int64
		)
		e, err := scanEntry(rows, &kind, &rowCurrent, &rowPruned)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlstore: entry changes: %w", err)
		}
		switch {
		case kind == changeCounter:
			current, pruned, counterRead = rowCurrent, rowPruned, true
			if since > 0 && (since < pruned || since > current) {
				return nil, current, fmt.Errorf("sqlstore: entry changes since %d (kept since %d, current %d): %w",
					since, pruned, current, store.ErrRevisionGone)
			}
		case !counterRead:
			return nil, 0, errors.New("sqlstore: entry changes: a change came before the revision counter")
		case kind == changeEntry:
			changes = append(changes, store.EntryChange{Revision: e.Revision, Entry: e})
		case kind == changeDeletion:
			changes = append(changes, store.EntryChange{Revision: e.Revision, Entry: store.Entry{ID: e.ID, Parent: e.Parent}, Deleted: true})
		default:
			return nil, 0, fmt.Errorf("sqlstore: entry changes: row of kind %d", kind)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: entry changes: %w", err)
	}
	if !counterRead {
		return nil, 0, errors.New("sqlstore: entry changes: no revision counter")
	}
	return changes, current, nil
}

// EntryRevision returns the revision of the last entry change, 0 before any.
func (s *Store) EntryRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.read.QueryRowContext(ctx, `SELECT revision FROM spiffe_revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("sqlstore: entry revision: %w", err)
	}
	return rev, nil
}

// scanEntry reads a row of entryColumns followed by extra.
func scanEntry(row scanner, extra ...any) (store.Entry, error) {
	var (
		e                store.Entry
		selectors, dns   string
		x509TTL, jwtTTL  int64
		created, updated int64
		selErr, dnsErr   error
	)
	dest := []any{&e.ID, &e.SPIFFEID, &e.Parent, &selectors, &x509TTL, &jwtTTL, &dns, &e.Hint, &e.Revision, &created, &updated}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return e, err
	}
	e.Selectors, selErr = decodeList(selectors)
	e.DNSNames, dnsErr = decodeList(dns)
	if err := errors.Join(selErr, dnsErr); err != nil {
		return e, fmt.Errorf("entry %s: decode: %w", e.ID, err)
	}
	e.X509TTL = time.Duration(x509TTL) * time.Microsecond
	e.JWTTTL = time.Duration(jwtTTL) * time.Microsecond
	e.CreatedAt = fromMicros(created)
	e.UpdatedAt = fromMicros(updated)
	return e, nil
}

// nodeColumns are the columns scanNode reads, in order.
const nodeColumns = `spiffe_id, attestation, selectors, cert_serial, evicted, created_at, updated_at`

// putNode replaces a node that is not evicted, keeping its created_at.
const putNode = `INSERT INTO spiffe_nodes (` + nodeColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (spiffe_id) DO UPDATE SET attestation = excluded.attestation, selectors = excluded.selectors,
		cert_serial = excluded.cert_serial, evicted = excluded.evicted, updated_at = excluded.updated_at
	WHERE spiffe_nodes.evicted = 0`

// PutNode creates or replaces the record of node n.SPIFFEID and appends ev;
// store.ErrStateChanged, writing nothing, when the node is evicted. A
// replaced node keeps its CreatedAt. Zero CreatedAt and UpdatedAt record
// now.
func (s *Store) PutNode(ctx context.Context, n store.Node, ev audit.Event) error {
	what := "put node " + n.SPIFFEID
	if n.SPIFFEID == "" {
		return errors.New("sqlstore: put node: empty spiffe id")
	}
	now := s.now()
	if n.CreatedAt.IsZero() {
		n.CreatedAt = now
	}
	if n.UpdatedAt.IsZero() {
		n.UpdatedAt = now
	}
	selectors, err := jsonList(n.Selectors)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: encode selectors: %w", what, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return s.lockedTx(ctx, what, func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, putNode, n.SPIFFEID, n.Attestation, selectors, string(n.CertSerial), boolInt(n.Evicted),
			micros(n.CreatedAt), micros(n.UpdatedAt))
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrStateChanged); err != nil {
			return fmt.Errorf("node is evicted: %w", err)
		}
		emit(events...)
		return nil
	})
}

// GetNode returns the node or store.ErrNotFound.
func (s *Store) GetNode(ctx context.Context, spiffeID string) (store.Node, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM spiffe_nodes WHERE spiffe_id = $1`, spiffeID)
	return getOne(row, scanNode, "node "+spiffeID)
}

// ListNodes returns every node ordered by SPIFFE ID (in byte order).
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	return queryAll(ctx, s.read, "list nodes", scanNode, `SELECT `+nodeColumns+` FROM spiffe_nodes ORDER BY spiffe_id`)
}

// EvictNode marks a node evicted, sets its UpdatedAt to now, and appends
// ev; store.ErrNotFound if absent. Evicting an evicted node succeeds.
func (s *Store) EvictNode(ctx context.Context, spiffeID string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: evict node %s: %w", spiffeID, err)
	}
	return s.changeOneRow(ctx, "evict node "+spiffeID, events, store.ErrNotFound,
		`UPDATE spiffe_nodes SET evicted = 1, updated_at = $2 WHERE spiffe_id = $1`, spiffeID, micros(s.now()))
}

func scanNode(row scanner) (store.Node, error) {
	var (
		n                store.Node
		selectors        string
		certSerial       string
		evicted          int
		created, updated int64
	)
	if err := row.Scan(&n.SPIFFEID, &n.Attestation, &selectors, &certSerial, &evicted, &created, &updated); err != nil {
		return n, err
	}
	n.CertSerial = store.Serial(certSerial)
	var err error
	if n.Selectors, err = decodeList(selectors); err != nil {
		return n, fmt.Errorf("node %s: decode selectors: %w", n.SPIFFEID, err)
	}
	n.Evicted = evicted != 0
	n.CreatedAt = fromMicros(created)
	n.UpdatedAt = fromMicros(updated)
	return n, nil
}

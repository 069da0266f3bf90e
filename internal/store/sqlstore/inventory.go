package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// The inventory: scanned certificates, their sightings, and listings that
// merge them with issued certificates.
//
// RecordScan decides which certificate is current where. At a location, the
// current certificate is the one with the latest notAfter among those seen
// there within the run's hold; a sighting of a scope the run covered that was
// not seen within the hold is current no more. A certificate is active while
// it is current somewhere. So a renewal takes over its location at the first
// scan that sees it, a rollout that alternates old and new certificates
// leaves the new one current throughout, and a certificate no longer
// presented anywhere stops being active one hold after it was last seen.

// Statements of RecordScan, constant for the SQLite writer.
const (
	upsertInventoryCert = `INSERT INTO inventory_certs (fingerprint, serial, subject, issuer_dn, names, not_before, not_after,
			chain, findings, issued_serial, labels, active, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, 0, $11, $11)
		ON CONFLICT (fingerprint) DO UPDATE SET chain = excluded.chain, findings = excluded.findings,
			issued_serial = excluded.issued_serial, labels = excluded.labels, last_seen = excluded.last_seen
		RETURNING id`
	insertInventoryName = `INSERT INTO inventory_names (name, cert_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	upsertSighting      = `INSERT INTO inventory_sightings (location, cert_id, scope, findings, current, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, 0, $5, $5)
		ON CONFLICT (location, cert_id) DO UPDATE SET scope = excluded.scope, findings = excluded.findings,
			last_seen = excluded.last_seen`
	// newestAtLocation is the certificate a location presents now.
	newestAtLocation = `SELECT s.cert_id FROM inventory_sightings s JOIN inventory_certs c ON c.id = s.cert_id
		WHERE s.location = $1 AND s.last_seen >= $2
		ORDER BY c.not_after DESC, s.last_seen DESC, s.cert_id DESC LIMIT 1`
	markCurrentAtLocation = `UPDATE inventory_sightings SET current = CASE WHEN cert_id = $2 THEN 1 ELSE 0 END
		WHERE location = $1 AND current <> CASE WHEN cert_id = $2 THEN 1 ELSE 0 END`
	expireScopeSightings = `UPDATE inventory_sightings SET current = 0 WHERE scope = $1 AND last_seen < $2 AND current = 1`
	activeExpr           = `CASE WHEN EXISTS (SELECT 1 FROM inventory_sightings s
		WHERE s.cert_id = inventory_certs.id AND s.current = 1) THEN 1 ELSE 0 END`
	refreshActiveInScope = `UPDATE inventory_certs SET active = ` + activeExpr + `
		WHERE id IN (SELECT cert_id FROM inventory_sightings WHERE scope = $1)`
	refreshActiveAtLocation = `UPDATE inventory_certs SET active = ` + activeExpr + `
		WHERE id IN (SELECT cert_id FROM inventory_sightings WHERE location = $1)`
)

// RecordScan records what a scan run saw, in one transaction.
func (s *Store) RecordScan(ctx context.Context, run store.ScanRun) error {
	type encoded struct {
		names, findings, labels string
		chain                   []byte
	}
	enc := make([]encoded, len(run.Observations))
	scopes := slices.Clone(run.Scopes)
	var locations []string
	for i, o := range run.Observations {
		if len(o.Chain) == 0 || o.Fingerprint == "" || o.Location == "" {
			return fmt.Errorf("sqlstore: record scan: observation %d has no chain, fingerprint or location", i)
		}
		names, err := json.Marshal(nonNil(o.Names))
		if err != nil {
			return fmt.Errorf("sqlstore: record scan: %w", err)
		}
		findings, err := json.Marshal(nonNil(o.Findings))
		if err != nil {
			return fmt.Errorf("sqlstore: record scan: %w", err)
		}
		labels, err := encodeLabels(o.Labels)
		if err != nil {
			return fmt.Errorf("sqlstore: record scan: %w", err)
		}
		enc[i] = encoded{names: string(names), findings: string(findings), labels: labels, chain: slices.Concat(o.Chain...)}
		if !slices.Contains(scopes, o.Scope) {
			scopes = append(scopes, o.Scope)
		}
		if !slices.Contains(locations, o.Location) {
			locations = append(locations, o.Location)
		}
	}
	at := micros(run.At)
	since := micros(run.At.Add(-run.Hold))
	return s.writeTx(ctx, "record scan", func(w writer) error {
		for i, o := range run.Observations {
			var id int64
			if err := w.queryRow(ctx, upsertInventoryCert, []any{o.Fingerprint, string(o.Serial), o.Subject, o.IssuerDN,
				enc[i].names, micros(o.NotBefore), micros(o.NotAfter), enc[i].chain, enc[i].findings,
				string(o.IssuedSerial), at, enc[i].labels}, &id); err != nil {
				return err
			}
			for _, n := range lookupNames(&store.Certificate{Subject: commonName(o.Subject), Names: o.Names}) {
				if _, err := w.exec(ctx, insertInventoryName, n, id); err != nil {
					return err
				}
			}
			if _, err := w.exec(ctx, upsertSighting, o.Location, id, o.Scope, enc[i].findings, at); err != nil {
				return err
			}
		}
		for _, loc := range locations {
			var best int64
			if err := w.queryRow(ctx, newestAtLocation, []any{loc, since}, &best); err != nil {
				return err
			}
			if _, err := w.exec(ctx, markCurrentAtLocation, loc, best); err != nil {
				return err
			}
		}
		for _, scope := range scopes {
			if _, err := w.exec(ctx, expireScopeSightings, scope, since); err != nil {
				return err
			}
			if _, err := w.exec(ctx, refreshActiveInScope, scope); err != nil {
				return err
			}
		}
		for _, loc := range locations {
			if _, err := w.exec(ctx, refreshActiveAtLocation, loc); err != nil {
				return err
			}
		}
		return nil
	})
}

// encodeLabels stores labels as a JSON object ({} for none).
func encodeLabels(labels map[string]string) (string, error) {
	if len(labels) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(labels)
	return string(b), err
}

// commonName is the CN of an RFC 4514 distinguished name as Go prints one
// ("CN=web,O=Example"), or "".
func commonName(dn string) string {
	for _, part := range strings.Split(dn, ",") {
		if v, ok := strings.CutPrefix(part, "CN="); ok {
			return v
		}
	}
	return ""
}

// Page sizes of ListInventory.
const (
	defaultInventoryPage = 100
	maxInventoryPage     = 1000
)

// issuedReplaced says an issued certificate c has been replaced: renewed
// (a certificate records it as renewed_from), or issued again since under
// the same provisioner for the same subject and names and still valid, as
// agents re-mint SVIDs and the server its own certificates. The second
// reads one entry of cert_names' (name, cert_id) index.
// The name looked up is the subject, or the first SAN when there is no
// subject (SVIDs).
func (d *dialect) issuedReplaced() string {
	return `(EXISTS (SELECT 1 FROM certificates r WHERE r.renewed_from = c.serial AND r.renewed_from <> '')
		OR EXISTS (SELECT 1 FROM cert_names n JOIN certificates r ON r.id = n.cert_id
			WHERE n.name = coalesce(nullif(c.subject, ''), ` + d.firstName + `) AND n.cert_id > c.id
				AND r.status = 'valid' AND r.provisioner = c.provisioner AND r.names = c.names))`
}

// inventoryArm is the columns one source contributes to a listing, in the
// order scanInventoryItem reads them.
const (
	issuedArmTemplate = `SELECT 'issued' AS source, c.id AS id, '' AS fingerprint, c.serial AS serial, c.subject AS subject,
		c.issuer AS issuer, c.provisioner AS provisioner, c.names AS names, c.not_before AS not_before,
		c.not_after AS not_after, c.der AS chain, '[]' AS findings, c.status AS status,
		CASE WHEN c.status = 'valid' AND NOT {replaced} THEN 1 ELSE 0 END AS active,
		CASE WHEN {replaced} THEN 1 ELSE 0 END AS replaced,
		'' AS issued_serial, '{}' AS labels, c.created_at AS first_seen, c.created_at AS last_seen
		FROM certificates c`
	scannedArm = `SELECT 'scanned' AS source, c.id AS id, c.fingerprint AS fingerprint, c.serial AS serial, c.subject AS subject,
		c.issuer_dn AS issuer, '' AS provisioner, c.names AS names, c.not_before AS not_before,
		c.not_after AS not_after, c.chain AS chain, c.findings AS findings, '' AS status,
		c.active AS active, 0 AS replaced, c.issued_serial AS issued_serial, c.labels AS labels, c.first_seen AS first_seen, c.last_seen AS last_seen
		FROM inventory_certs c`
	inventoryColumns = `source, id, fingerprint, serial, subject, issuer, provisioner, names, not_before, not_after,
		chain, findings, status, active, replaced, issued_serial, labels, first_seen, last_seen`
)

// issuedArm is the issued source's columns for this dialect.
func (s *Store) issuedArm() string {
	return strings.ReplaceAll(issuedArmTemplate, "{replaced}", s.dialect.issuedReplaced())
}

// inventoryCursor is a position in a listing: the last item's expiry,
// source and id.
type inventoryCursor struct {
	notAfter int64
	source   store.InventorySource
	id       int64
}

func (c inventoryCursor) String() string {
	return fmt.Sprintf("%d.%s.%d", c.notAfter, c.source, c.id)
}

func parseInventoryCursor(s string) (inventoryCursor, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return inventoryCursor{}, store.ErrBadCursor
	}
	na, err1 := strconv.ParseInt(parts[0], 10, 64)
	id, err2 := strconv.ParseInt(parts[2], 10, 64)
	src := store.InventorySource(parts[1])
	if err1 != nil || err2 != nil || (src != store.SourceIssued && src != store.SourceScanned) {
		return inventoryCursor{}, store.ErrBadCursor
	}
	return inventoryCursor{notAfter: na, source: src, id: id}, nil
}

// inventoryMode says what inventoryQuery's query returns.
type inventoryMode int

const (
	listItems     inventoryMode = iota // a page of items
	countItems                         // how many items f selects
	itemsNotAfter                      // the not_after of every item f selects
)

// inventoryQuery builds ListInventory's query for f, or (f.After and
// f.Limit aside) the query of how many items f selects or of their
// not_after, and returns it with its arguments and the page size.
func (s *Store) inventoryQuery(f store.InventoryFilter, mode inventoryMode) (string, []any, int, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultInventoryPage
	}
	limit = min(limit, maxInventoryPage)
	var cursor *inventoryCursor
	if f.After != "" {
		c, err := parseInventoryCursor(f.After)
		if err != nil {
			return "", nil, 0, err
		}
		cursor = &c
	}
	desc := ""
	if f.LatestFirst {
		desc = " DESC"
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	arm := func(src store.InventorySource, query, namesTable string) string {
		var where []string
		if cursor != nil {
			// What comes after the cursor in (not_after, source, id) order,
			// or before it when the listing runs backwards.
			t := arg(cursor.notAfter)
			past, reached, sourceFirst := " > ", " >= ", src < cursor.source
			if f.LatestFirst {
				past, reached, sourceFirst = " < ", " <= ", src > cursor.source
			}
			switch {
			case sourceFirst:
				where = append(where, "c.not_after"+past+t)
			case src == cursor.source:
				where = append(where, "c.not_after"+reached+t+" AND (c.not_after"+past+t+" OR c.id"+past+arg(cursor.id)+")")
			default:
				where = append(where, "c.not_after"+reached+t)
			}
		}
		if f.Name != "" {
			where = append(where, "c.id IN (SELECT cert_id FROM "+namesTable+" WHERE name = "+arg(f.Name)+")")
		}
		if !f.ExpiringBefore.IsZero() {
			where = append(where, "c.not_after < "+arg(micros(f.ExpiringBefore)))
		}
		if f.Serial != "" {
			where = append(where, "c.serial = "+arg(string(f.Serial)))
		}
		now := f.Now
		if now.IsZero() {
			now = s.now()
		}
		if f.RenewalOverdue {
			t := arg(micros(now))
			where = append(where, "c.not_after > "+t+" AND c.not_before + (c.not_after - c.not_before) * 2 / 3 < "+t)
		}
		switch f.Status {
		case store.StatusExpired:
			where = append(where, "c.not_after < "+arg(micros(now)))
		case store.StatusValid:
			where = append(where, "c.not_after >= "+arg(micros(now)))
		}
		switch src {
		case store.SourceIssued:
			if f.Active {
				where = append(where, "c.status = 'valid' AND NOT "+s.dialect.issuedReplaced())
			}
			if f.Issuer != "" {
				where = append(where, "c.issuer = "+arg(f.Issuer))
			}
			if f.Provisioner != "" {
				where = append(where, "c.provisioner = "+arg(f.Provisioner))
			}
			if !f.IssuedSince.IsZero() {
				where = append(where, "c.created_at >= "+arg(micros(f.IssuedSince)))
			}
			switch f.Status {
			case store.StatusValid:
				where = append(where, "c.status = 'valid'")
			case store.StatusRevoked:
				where = append(where, "c.status = 'revoked'")
			}
		case store.SourceScanned:
			if f.Active {
				where = append(where, "c.active = 1")
			}
			if f.Issuer != "" {
				where = append(where, "c.issuer_dn = "+arg(f.Issuer))
			}
			if f.Provisioner != "" || f.Status == store.StatusRevoked || !f.IssuedSince.IsZero() {
				where = append(where, "1 = 0") // issued items only
			}
			if f.Source == "" {
				where = append(where, "c.issued_serial = ''")
			}
			if f.WithFindings {
				// As the partial index inventory_certs_notable says it.
				where = append(where, "(findings <> '[]' OR issued_serial <> '')")
			}
		}
		if len(where) > 0 {
			query += " WHERE " + strings.Join(where, " AND ")
		}
		switch mode {
		case countItems:
			return "SELECT count(*) AS n FROM (" + query + ") AS " + string(src)
		case itemsNotAfter:
			return "SELECT not_after FROM (" + query + ") AS " + string(src)
		}
		return "SELECT " + inventoryColumns + " FROM (" + query + " ORDER BY c.not_after" + desc + ", c.id" + desc + " LIMIT " + arg(limit+1) + ") AS " + string(src)
	}
	if f.WithFindings && f.Source != store.SourceScanned {
		return "", nil, 0, errors.New("WithFindings is for scanned items")
	}
	switch f.Status {
	case "", store.StatusValid, store.StatusRevoked, store.StatusExpired:
	default:
		return "", nil, 0, fmt.Errorf("unknown status %q", f.Status)
	}
	var q string
	switch f.Source {
	case store.SourceIssued:
		q = arm(store.SourceIssued, s.issuedArm(), "cert_names")
	case store.SourceScanned:
		q = arm(store.SourceScanned, scannedArm, "inventory_names")
	case "":
		q = arm(store.SourceIssued, s.issuedArm(), "cert_names") + " UNION ALL " + arm(store.SourceScanned, scannedArm, "inventory_names")
	default:
		return "", nil, 0, fmt.Errorf("unknown source %q", f.Source)
	}
	switch mode {
	case countItems:
		return "SELECT sum(n) FROM (" + q + ") AS counts", args, 0, nil
	case itemsNotAfter:
		return q, args, 0, nil
	}
	q += " ORDER BY not_after" + desc + ", source" + desc + ", id" + desc + " LIMIT " + arg(limit+1)
	return q, args, limit, nil
}

// CountInventory counts the items f selects (f.After and f.Limit aside),
// through the same not_after and name indexes as ListInventory.
func (s *Store) CountInventory(ctx context.Context, f store.InventoryFilter) (int, error) {
	f.After, f.Limit = "", 0
	q, args, _, err := s.inventoryQuery(f, countItems)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: count inventory: %w", err)
	}
	var n sql.NullInt64
	if err := s.read.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count inventory: %w", err)
	}
	return int(n.Int64), nil
}

// InventoryExpiries counts the items f selects by when they expire: those
// expired at now, then n buckets of width from now on (f.ExpiringBefore,
// f.After and f.Limit aside), in one statement grouped by bucket.
func (s *Store) InventoryExpiries(ctx context.Context, f store.InventoryFilter, now time.Time, width time.Duration, n int) (int, []int, error) {
	if width <= 0 || n <= 0 || n > 10000 {
		return 0, nil, errors.New("sqlstore: inventory expiries: width and 1 to 10,000 buckets")
	}
	f.After, f.Limit = "", 0
	f.ExpiringBefore = now.Add(time.Duration(n) * width)
	q, args, _, err := s.inventoryQuery(f, itemsNotAfter)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlstore: inventory expiries: %w", err)
	}
	p := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	at, w := p(micros(now)), p(width.Microseconds())
	q = "SELECT CASE WHEN not_after < " + at + " THEN -1 ELSE (not_after - " + at + ") / " + w + " END AS bucket, count(*) FROM (" +
		q + ") AS expiries GROUP BY 1"
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlstore: inventory expiries: %w", err)
	}
	defer rows.Close()
	expired, buckets := 0, make([]int, n)
	for rows.Next() {
		var b, c int64
		if err := rows.Scan(&b, &c); err != nil {
			return 0, nil, fmt.Errorf("sqlstore: inventory expiries: %w", err)
		}
		switch {
		case b < 0:
			expired += int(c)
		case b < int64(n):
			buckets[b] += int(c)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("sqlstore: inventory expiries: %w", err)
	}
	return expired, buckets, nil
}

// ListInventory returns one page of the inventory, soonest expiry first.
// Each source is read through its not_after index for at most one page,
// and the two are merged.
func (s *Store) ListInventory(ctx context.Context, f store.InventoryFilter) (store.InventoryPage, error) {
	q, args, limit, err := s.inventoryQuery(f, listItems)
	if err != nil {
		return store.InventoryPage{}, fmt.Errorf("sqlstore: list inventory: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return store.InventoryPage{}, fmt.Errorf("sqlstore: list inventory: %w", err)
	}
	defer rows.Close()
	var (
		page    store.InventoryPage
		cursors []inventoryCursor
	)
	for rows.Next() {
		it, c, err := scanInventoryItem(rows)
		if err != nil {
			return store.InventoryPage{}, fmt.Errorf("sqlstore: list inventory: %w", err)
		}
		page.Items = append(page.Items, it)
		cursors = append(cursors, c)
	}
	if err := rows.Err(); err != nil {
		return store.InventoryPage{}, fmt.Errorf("sqlstore: list inventory: %w", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.Next = cursors[limit-1].String()
	}
	return page, nil
}

func scanInventoryItem(row scanner) (store.InventoryItem, inventoryCursor, error) {
	var (
		it                                                  store.InventoryItem
		source, serial, names, findings, issued, st, labels string
		id, notBefore, notAfter, first, last                int64
		active, replaced                                    int
		chain                                               []byte
	)
	if err := row.Scan(&source, &id, &it.Fingerprint, &serial, &it.Subject, &it.Issuer, &it.Provisioner, &names,
		&notBefore, &notAfter, &chain, &findings, &st, &active, &replaced, &issued, &labels, &first, &last); err != nil {
		return it, inventoryCursor{}, err
	}
	it.Source, it.Serial, it.IssuedSerial, it.Status = store.InventorySource(source), store.Serial(serial), store.Serial(issued), store.Status(st)
	it.Active, it.Replaced = active == 1, replaced == 1
	it.NotBefore, it.NotAfter = fromMicros(notBefore), fromMicros(notAfter)
	it.FirstSeen, it.LastSeen = fromMicros(first), fromMicros(last)
	if err := json.Unmarshal([]byte(names), &it.Names); err != nil {
		return it, inventoryCursor{}, fmt.Errorf("decode names: %w", err)
	}
	err := json.Unmarshal([]byte(findings), &it.Findings)
	if err != nil {
		return it, inventoryCursor{}, fmt.Errorf("decode findings: %w", err)
	}
	if err := json.Unmarshal([]byte(labels), &it.Labels); err != nil {
		return it, inventoryCursor{}, fmt.Errorf("decode labels: %w", err)
	}
	if it.Source == store.SourceIssued {
		it.Chain = [][]byte{chain}
	} else if it.Chain, err = splitDER(chain); err != nil {
		return it, inventoryCursor{}, err
	}
	return it, inventoryCursor{notAfter: notAfter, source: it.Source, id: id}, nil
}

// splitDER splits DER certificates written one after another, by their
// ASN.1 lengths alone.
func splitDER(b []byte) ([][]byte, error) {
	in := cryptobyte.String(b)
	var out [][]byte
	for !in.Empty() {
		var cert cryptobyte.String
		if !in.ReadASN1Element(&cert, cryptobyte_asn1.SEQUENCE) {
			return nil, errors.New("decode chain: not DER certificates")
		}
		out = append(out, cert)
	}
	return out, nil
}

// GetScanned returns a scanned certificate and its sightings, latest first.
func (s *Store) GetScanned(ctx context.Context, fingerprint string) (store.InventoryItem, []store.Sighting, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+inventoryColumns+` FROM (`+scannedArm+` WHERE c.fingerprint = $1) AS scanned`, fingerprint)
	it, cur, err := scanInventoryItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: inventory %s: %w", fingerprint, store.ErrNotFound)
	}
	if err != nil {
		return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: get inventory %s: %w", fingerprint, err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT scope, location, first_seen, last_seen, current, findings
		FROM inventory_sightings WHERE cert_id = $1 ORDER BY last_seen DESC, location`, cur.id)
	if err != nil {
		return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: get inventory %s: %w", fingerprint, err)
	}
	defer rows.Close()
	var out []store.Sighting
	for rows.Next() {
		var (
			sg          store.Sighting
			first, last int64
			current     int
			findings    string
		)
		if err := rows.Scan(&sg.Scope, &sg.Location, &first, &last, &current, &findings); err != nil {
			return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: get inventory %s: %w", fingerprint, err)
		}
		sg.FirstSeen, sg.LastSeen, sg.Current = fromMicros(first), fromMicros(last), current == 1
		if err := json.Unmarshal([]byte(findings), &sg.Findings); err != nil {
			return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: get inventory %s: decode findings: %w", fingerprint, err)
		}
		out = append(out, sg)
	}
	if err := rows.Err(); err != nil {
		return store.InventoryItem{}, nil, fmt.Errorf("sqlstore: get inventory %s: %w", fingerprint, err)
	}
	return it, out, nil
}

// Scan schedules.

const scheduleColumns = `name, targets, every, options, next_run, last_run, last_error, created_at`

// Statements of the schedule writes, constant for the SQLite writer.
const (
	dueSchedule = `SELECT name FROM scan_schedules WHERE next_run <= $1 ORDER BY next_run, name LIMIT 1`
	// dueScheduleSkipLocked lets replicas claim different schedules at once.
	dueScheduleSkipLocked = dueSchedule + ` FOR UPDATE SKIP LOCKED`
	claimSchedule         = `UPDATE scan_schedules SET next_run = $2 + every, claimed_at = $2 WHERE name = $1`
	finishSchedule        = `UPDATE scan_schedules SET last_run = $2, last_error = $3, claimed_at = NULL WHERE name = $1`
	releaseSchedules      = `UPDATE scan_schedules SET next_run = $1, claimed_at = NULL WHERE claimed_at IS NOT NULL`
	scheduleDueNow        = `UPDATE scan_schedules SET next_run = $2 WHERE name = $1`
)

// CreateSchedule stores sc; store.ErrConflict if the name exists.
func (s *Store) CreateSchedule(ctx context.Context, sc store.ScanSchedule, ev audit.Event) error {
	if sc.Name == "" || len(sc.Targets) == 0 || sc.Every <= 0 {
		return errors.New("sqlstore: create schedule: needs a name, targets and a positive interval")
	}
	targets, err := json.Marshal(sc.Targets)
	if err != nil {
		return fmt.Errorf("sqlstore: create schedule %s: %w", sc.Name, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create schedule %s: %w", sc.Name, err)
	}
	if sc.CreatedAt.IsZero() {
		sc.CreatedAt = s.now()
	}
	options := string(sc.Options)
	if options == "" {
		options = "{}"
	}
	return s.changeOneRow(ctx, "create schedule "+sc.Name, events, store.ErrConflict,
		`INSERT INTO scan_schedules (`+scheduleColumns+`) VALUES ($1, $2, $3, $4, $5, NULL, '', $6) ON CONFLICT (name) DO NOTHING`,
		sc.Name, string(targets), sc.Every.Microseconds(), options, micros(sc.NextRun), micros(sc.CreatedAt))
}

// DeleteSchedule removes a schedule; store.ErrNotFound if absent.
func (s *Store) DeleteSchedule(ctx context.Context, name string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: delete schedule %s: %w", name, err)
	}
	return s.changeOneRow(ctx, "delete schedule "+name, events, store.ErrNotFound,
		`DELETE FROM scan_schedules WHERE name = $1`, name)
}

// ListSchedules returns every schedule ordered by name.
func (s *Store) ListSchedules(ctx context.Context) ([]store.ScanSchedule, error) {
	return queryAll(ctx, s.read, "list schedules", scanSchedule, `SELECT `+scheduleColumns+` FROM scan_schedules ORDER BY name`)
}

func scanSchedule(row scanner) (store.ScanSchedule, error) {
	var (
		sc                   store.ScanSchedule
		targets, options     string
		every, next, created int64
		last                 sql.NullInt64
	)
	if err := row.Scan(&sc.Name, &targets, &every, &options, &next, &last, &sc.LastError, &created); err != nil {
		return sc, err
	}
	if err := json.Unmarshal([]byte(targets), &sc.Targets); err != nil {
		return sc, fmt.Errorf("schedule %s: decode targets: %w", sc.Name, err)
	}
	sc.Every = time.Duration(every) * time.Microsecond
	sc.Options = []byte(options)
	sc.NextRun, sc.LastRun, sc.CreatedAt = fromMicros(next), fromNullMicros(last), fromMicros(created)
	return sc, nil
}

// ClaimDueSchedule claims the schedule due longest at now, if any, and
// returns it with its next run moved.
func (s *Store) ClaimDueSchedule(ctx context.Context, now time.Time) (store.ScanSchedule, error) {
	due := dueSchedule
	if s.sqlite == nil {
		due = dueScheduleSkipLocked
	}
	// Most looks find nothing due: ask the read pool first, and take a
	// write transaction only to claim.
	var first string
	if err := s.read.QueryRowContext(ctx, dueSchedule, micros(now)).Scan(&first); errors.Is(err, sql.ErrNoRows) {
		return store.ScanSchedule{}, store.ErrNotFound
	} else if err != nil {
		return store.ScanSchedule{}, fmt.Errorf("sqlstore: claim schedule: %w", err)
	}
	var name string
	err := s.writeTx(ctx, "claim schedule", func(w writer) error {
		if err := w.queryRow(ctx, due, []any{micros(now)}, &name); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		_, err := w.exec(ctx, claimSchedule, name, micros(now))
		return err
	})
	if err != nil {
		return store.ScanSchedule{}, err
	}
	sc, err := scanSchedule(s.read.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM scan_schedules WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		// Removed since it was claimed.
		return store.ScanSchedule{}, fmt.Errorf("sqlstore: schedule %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.ScanSchedule{}, fmt.Errorf("sqlstore: claim schedule %s: %w", name, err)
	}
	return sc, nil
}

// DueNow makes a schedule due at now.
func (s *Store) DueNow(ctx context.Context, name string, now time.Time) error {
	return s.writeTx(ctx, "run schedule "+name, func(w writer) error {
		res, err := w.exec(ctx, scheduleDueNow, name, micros(now))
		if err != nil {
			return err
		}
		return expectOneRow(res, store.ErrNotFound)
	})
}

// ReleaseSchedules makes every claimed, unfinished schedule due at now.
func (s *Store) ReleaseSchedules(ctx context.Context, now time.Time) (int, error) {
	return s.release(ctx, "schedules", releaseSchedules, now)
}

// FinishSchedule records the outcome of a run.
func (s *Store) FinishSchedule(ctx context.Context, name string, ranAt time.Time, runErr string) error {
	return s.writeTx(ctx, "finish schedule "+name, func(w writer) error {
		_, err := w.exec(ctx, finishSchedule, name, micros(ranAt), runErr)
		return err
	})
}

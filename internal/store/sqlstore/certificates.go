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

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// certColumns are the columns scanCertificate reads, in order.
const certColumns = `serial, provisioner, issuer, subject, names, not_before, not_after, der,
	status, revoked_at, revocation_reason, renewed_from, created_at, issuer_generation, crl_shard`

// certInsertColumns are the columns an issuance writes: certColumns and
// audit_seq, the sequence number of the first audit record committed with
// the certificate (0 if none was), where CertificateAudit finds its
// issuance without an index on every record's subject.
const certInsertColumns = certColumns + `, audit_seq`

// CommitIssuances writes all items in one transaction. It decides the items
// in order: an item whose token id is recorded (before the batch or by an
// accepted earlier item) is refused as replayed; otherwise one whose serial is
// recorded is refused as a conflict and its token id stays unconsumed;
// otherwise it is accepted, and its token id, certificate, names and audit
// events are written.
//
// Everything that does not depend on what is stored is encoded before the
// write lock is taken. On SQLite the items are then written one by one (see
// commitByRow), on PostgreSQL decided in Go and written together in two
// round trips (see commitPostgres). On both, concurrent calls share one
// durable commit (groupCommit): a call's items are decided after those of
// the calls queued before it.
func (s *Store) CommitIssuances(ctx context.Context, items []store.Issuance) ([]error, error) {
	results := make([]error, len(items))
	if len(items) == 0 {
		return results, nil
	}
	now := s.now()
	batch := make([]pendingIssuance, len(items))
	for i, it := range items {
		batch[i].index = i
		if err := batch[i].encode(it, now); err != nil {
			return nil, fmt.Errorf("sqlstore: commit issuances: item %d: %w", i, err)
		}
	}
	var err error
	if s.sqlite != nil {
		err = s.lockedTx(ctx, "commit issuances", func(w writer, emit emitFunc) error {
			return commitByRow(ctx, w, batch, results, emit)
		})
	} else {
		if err = s.issuances.do(ctx, issuanceCall{batch, results}); err != nil {
			err = fmt.Errorf("sqlstore: commit issuances: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// pendingIssuance is a store.Issuance encoded for writing.
type pendingIssuance struct {
	index        int // of the item in its CommitIssuances call, for errors
	tokenID      string
	tokenExpires int64
	cert         *pendingCert // nil when there is no certificate
	acmeOrder    string
	node         *pendingNode
	at           int64 // when the batch was committed, unix µs
	events       []pendingEvent
}

// pendingNode is a node record encoded as the arguments of putNode, but for
// the serial, which is the certificate's.
type pendingNode struct {
	spiffeID, attestation, selectors string
	createdAt, updatedAt             int64
}

func (n *pendingNode) args(serial string) []any {
	return []any{n.spiffeID, n.attestation, n.selectors, serial, 0, n.createdAt, n.updatedAt}
}

func (p *pendingIssuance) encode(it store.Issuance, now time.Time) error {
	p.tokenID, p.tokenExpires = it.TokenID, micros(it.TokenExpires)
	p.acmeOrder, p.at = it.ACMEOrder, micros(now)
	if (p.acmeOrder != "" || it.Node != nil) && it.Certificate == nil {
		return errors.New("an ACME order or a node is recorded only with its certificate")
	}
	if n := it.Node; n != nil {
		if n.SPIFFEID == "" {
			return errors.New("node has no spiffe id")
		}
		selectors, err := jsonList(n.Selectors)
		if err != nil {
			return fmt.Errorf("node %s: encode selectors: %w", n.SPIFFEID, err)
		}
		created, updated := n.CreatedAt, n.UpdatedAt
		if created.IsZero() {
			created = now
		}
		if updated.IsZero() {
			updated = now
		}
		p.node = &pendingNode{spiffeID: n.SPIFFEID, attestation: n.Attestation, selectors: selectors, createdAt: micros(created), updatedAt: micros(updated)}
	}
	if it.Certificate != nil {
		c, err := encodeCertificate(it.Certificate, now)
		if err != nil {
			return err
		}
		p.cert = c
	}
	if len(it.Audit) > maxIssuanceEvents {
		return fmt.Errorf("%d audit records; an issuance commits at most %d", len(it.Audit), maxIssuanceEvents)
	}
	events, err := encodeEvents(it.Audit...)
	if err != nil {
		return err
	}
	p.events = events
	return nil
}

// pendingCert is a certificate encoded as its row of certColumns, with the
// names it is found by.
type pendingCert struct {
	serial, provisioner, issuer, subject string
	names                                string // JSON array
	notBefore, notAfter                  int64
	der                                  []byte
	status                               string
	revokedAt                            sql.NullInt64
	revocationReason                     int32
	renewedFrom                          string
	createdAt                            int64
	generation, shard                    int32
	auditSeq                             int64 // set when the item is accepted
	lookupNames                          []string
}

// encodeCertificate checks c and encodes it. An empty Status records a valid
// certificate; a zero CreatedAt records now.
func encodeCertificate(c *store.Certificate, now time.Time) (*pendingCert, error) {
	if err := checkCertificate(c); err != nil {
		return nil, err
	}
	names, err := json.Marshal(c.Names)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: encode names: %w", c.Serial, err)
	}
	status := c.Status
	if status == "" {
		status = store.StatusValid
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = now
	}
	der := c.DER
	if der == nil {
		der = []byte{}
	}
	return &pendingCert{
		serial: string(c.Serial), provisioner: c.Provisioner, issuer: c.Issuer, subject: c.Subject,
		names:     string(names),
		notBefore: micros(c.NotBefore), notAfter: micros(c.NotAfter),
		der:              der,
		status:           string(status),
		revokedAt:        nullMicros(c.RevokedAt),
		revocationReason: int32(c.RevocationReason),
		renewedFrom:      string(c.RenewedFrom),
		createdAt:        micros(created),
		generation:       int32(c.IssuerGeneration),
		shard:            int32(c.CRLShard),
		lookupNames:      lookupNames(c),
	}, nil
}

// args are the values of certInsertColumns.
func (c *pendingCert) args() []any {
	return []any{
		c.serial, c.provisioner, c.issuer, c.subject, c.names, c.notBefore, c.notAfter, c.der,
		c.status, c.revokedAt, c.revocationReason, c.renewedFrom, c.createdAt, c.generation, c.shard, c.auditSeq,
	}
}

func replayed(i int) error {
	return fmt.Errorf("sqlstore: item %d: %w", i, store.ErrTokenReplayed)
}

func serialConflict(i int, serial string) error {
	return fmt.Errorf("sqlstore: item %d: serial %s: %w", i, serial, store.ErrConflict)
}

// SQLite writes an issuance with a statement per row, which costs less there
// than one statement for many rows: that would need a statement journal. An
// INSERT that finds its key taken changes no row (DO NOTHING).
const (
	sqliteConsumeToken   = `INSERT INTO tokens (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`
	sqliteUnconsumeToken = `DELETE FROM tokens WHERE id = ?`
	sqliteInsertCert     = `INSERT INTO certificates (` + certInsertColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`
	sqliteInsertName = `INSERT INTO cert_names (name, cert_id) VALUES (?, ?)`
)

// commitByRow writes batch item by item on SQLite. An item's token id is
// consumed first, then its certificate recorded, each INSERT telling by the
// rows it changed whether the key was already there; if the serial is taken
// the token id is forgotten again.
func commitByRow(ctx context.Context, w writer, batch []pendingIssuance, results []error, emit emitFunc) error {
	for i, it := range batch {
		if it.acmeOrder != "" {
			// Under the write lock nothing else changes the order before
			// the update below.
			var status string
			err := w.queryRow(ctx, `SELECT status FROM acme_orders WHERE id = $1`, []any{it.acmeOrder}, &status)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				results[i] = fmt.Errorf("item %d: acme order %s: %w", i, it.acmeOrder, store.ErrNotFound)
				continue
			case err != nil:
				return fmt.Errorf("item %d: read acme order: %w", i, err)
			case status != store.ACMEReady:
				results[i] = fmt.Errorf("item %d: acme order %s is %s: %w", i, it.acmeOrder, status, store.ErrStateChanged)
				continue
			}
		}
		if it.node != nil {
			var evicted int
			err := w.queryRow(ctx, `SELECT evicted FROM spiffe_nodes WHERE spiffe_id = $1`, []any{it.node.spiffeID}, &evicted)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("item %d: read node: %w", i, err)
			case evicted != 0:
				results[i] = fmt.Errorf("item %d: node %s is evicted: %w", i, it.node.spiffeID, store.ErrStateChanged)
				continue
			}
		}
		if it.tokenID != "" {
			res, err := w.exec(ctx, sqliteConsumeToken, it.tokenID, it.tokenExpires)
			if err != nil {
				return fmt.Errorf("item %d: consume token id: %w", i, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("item %d: consume token id: %w", i, err)
			} else if n == 0 {
				results[i] = replayed(i)
				continue
			}
		}
		if c := it.cert; c != nil {
			if len(it.events) > 0 {
				c.auditSeq = emit() // the seq its events get below
			}
			res, err := w.exec(ctx, sqliteInsertCert, c.args()...)
			if err != nil {
				return fmt.Errorf("item %d: insert certificate: %w", i, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("item %d: insert certificate: %w", i, err)
			}
			if n == 0 {
				results[i] = serialConflict(i, c.serial)
				if it.tokenID != "" {
					if _, err := w.exec(ctx, sqliteUnconsumeToken, it.tokenID); err != nil {
						return fmt.Errorf("item %d: unconsume token id: %w", i, err)
					}
				}
				continue
			}
			id, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("item %d: insert certificate: %w", i, err)
			}
			for _, name := range c.lookupNames {
				if _, err := w.exec(ctx, sqliteInsertName, name, id); err != nil {
					return fmt.Errorf("item %d: index names: %w", i, err)
				}
			}
			if it.acmeOrder != "" {
				if _, err := w.exec(ctx, finalizeOrder, it.acmeOrder, c.serial, it.at); err != nil {
					return fmt.Errorf("item %d: finalize acme order: %w", i, err)
				}
			}
			if it.node != nil {
				if _, err := w.exec(ctx, putNode, it.node.args(c.serial)...); err != nil {
					return fmt.Errorf("item %d: record node: %w", i, err)
				}
			}
		}
		emit(it.events...)
	}
	return nil
}

// finalizeOrder moves a ready ACME order to valid with its certificate.
const finalizeOrder = `UPDATE acme_orders SET status = 'valid', cert_serial = $2, error = NULL, updated_at = $3 WHERE id = $1 AND status = 'ready'`

// checkCertificate refuses records the store could not order or look up
// consistently.
func checkCertificate(c *store.Certificate) error {
	if c.Serial == "" {
		return errors.New("certificate has no serial")
	}
	for _, r := range c.Serial {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return fmt.Errorf("serial %q is not lowercase hex", c.Serial)
		}
	}
	switch c.Status {
	case "", store.StatusValid, store.StatusRevoked:
	default:
		return fmt.Errorf("certificate %s: status %q cannot be recorded", c.Serial, c.Status)
	}
	if c.RevocationReason < 0 || c.RevocationReason > 10 {
		return fmt.Errorf("certificate %s: reason %d is not an RFC 5280 CRLReason", c.Serial, c.RevocationReason)
	}
	return nil
}

// lookupNames are the distinct names a certificate is found by: its subject
// and every SAN.
func lookupNames(c *store.Certificate) []string {
	out := make([]string, 0, len(c.Names)+1)
	seen := make(map[string]bool, len(c.Names)+1)
	for _, n := range append([]string{c.Subject}, c.Names...) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanCertificate(row scanner) (store.Certificate, error) {
	var (
		c                            store.Certificate
		names, status                string
		notBefore, notAfter, created int64
		revokedAt                    sql.NullInt64
	)
	var serial, renewedFrom string
	err := row.Scan(&serial, &c.Provisioner, &c.Issuer, &c.Subject, &names, &notBefore, &notAfter, &c.DER,
		&status, &revokedAt, &c.RevocationReason, &renewedFrom, &created, &c.IssuerGeneration, &c.CRLShard)
	c.Serial, c.RenewedFrom = store.Serial(serial), store.Serial(renewedFrom)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(names), &c.Names); err != nil {
		return c, fmt.Errorf("certificate %s: decode names: %w", c.Serial, err)
	}
	c.Status = store.Status(status)
	c.NotBefore = fromMicros(notBefore)
	c.NotAfter = fromMicros(notAfter)
	c.RevokedAt = fromNullMicros(revokedAt)
	c.CreatedAt = fromMicros(created)
	if len(c.DER) == 0 {
		c.DER = nil
	}
	return c, nil
}

// GetCertificate returns the record with this serial or store.ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, sn store.Serial) (store.Certificate, error) {
	serial := string(sn)
	row := s.read.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = $1`, serial)
	c, err := scanCertificate(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("sqlstore: certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("sqlstore: get certificate %s: %w", serial, err)
	}
	return c, nil
}

// Page sizes of ListCertificates.
const (
	defaultCertPage = 100
	maxCertPage     = 1000
)

// ListCertificates returns one page of the certificates f selects, ordered by
// serial (as text, in byte order).
func (s *Store) ListCertificates(ctx context.Context, f store.CertFilter) (store.CertPage, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultCertPage
	}
	limit = min(limit, maxCertPage)

	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.After != "" {
		where = append(where, "serial > "+arg(f.After))
	}
	if f.Name != "" {
		where = append(where, "id IN (SELECT cert_id FROM cert_names WHERE name = "+arg(f.Name)+")")
	}
	if f.RenewedFrom != "" {
		// The partial index certificates_renewed_from, as its "<> ''" says.
		where = append(where, "renewed_from = "+arg(string(f.RenewedFrom))+" AND renewed_from <> ''")
	}
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	switch f.Status {
	case "":
	case store.StatusValid:
		where = append(where, "status = 'valid' AND not_after >= "+arg(micros(now)))
	case store.StatusExpired:
		where = append(where, "status = 'valid' AND not_after < "+arg(micros(now)))
	case store.StatusRevoked:
		where = append(where, "status = 'revoked'")
	default:
		return store.CertPage{}, fmt.Errorf("sqlstore: list certificates: unknown status %q", f.Status)
	}
	if !f.ExpiringBefore.IsZero() {
		where = append(where, "not_after < "+arg(micros(f.ExpiringBefore)))
	}
	q := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY serial LIMIT " + arg(limit+1)

	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return store.CertPage{}, fmt.Errorf("sqlstore: list certificates: %w", err)
	}
	defer rows.Close()
	var page store.CertPage
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return store.CertPage{}, fmt.Errorf("sqlstore: list certificates: %w", err)
		}
		page.Certificates = append(page.Certificates, c)
	}
	if err := rows.Err(); err != nil {
		return store.CertPage{}, fmt.Errorf("sqlstore: list certificates: %w", err)
	}
	if len(page.Certificates) > limit {
		page.Certificates = page.Certificates[:limit]
		page.Next = string(page.Certificates[limit-1].Serial)
	}
	return page, nil
}

// RevokeCertificate marks a valid certificate revoked, and with r.Renewals
// every valid certificate renewed from it, appending their audit events in
// the same transaction.
func (s *Store) RevokeCertificate(ctx context.Context, r store.Revocation) ([]store.Serial, error) {
	serial := string(r.Serial)
	if r.Reason < 0 || r.Reason > 10 {
		return nil, fmt.Errorf("sqlstore: revoke certificate %s: reason %d is not an RFC 5280 CRLReason", serial, r.Reason)
	}
	if r.Renewals && r.RenewalEvent == nil {
		return nil, fmt.Errorf("sqlstore: revoke certificate %s: Renewals needs a RenewalEvent", serial)
	}
	events, err := encodeEvent(r.Event)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: revoke certificate %s: %w", serial, err)
	}
	at := r.At
	if at.IsZero() {
		at = s.now()
	}
	var renewals []string
	err = s.lockedTx(ctx, "revoke certificate "+serial, func(w writer, emit emitFunc) error {
		renewals = nil // a retried transaction starts again
		res, err := w.exec(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial = $1 AND status = 'valid'`, serial, micros(at), r.Reason)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := w.queryRow(ctx, `SELECT 1 FROM certificates WHERE serial = $1`, []any{serial}, &one)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return store.ErrNotFound
			case err != nil:
				return err
			default:
				return store.ErrAlreadyRevoked
			}
		}
		if _, err := w.exec(ctx, countRevocation); err != nil {
			return err
		}
		emit(events...)
		if !r.Renewals {
			return nil
		}
		// The renewal tree below serial, through the partial index on
		// renewed_from (the "<> ''" terms let both databases use it).
		renewals, err = w.queryStrings(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE status = 'valid' AND serial IN (
				WITH RECURSIVE lineage(serial) AS (
					SELECT serial FROM certificates WHERE renewed_from = $1 AND renewed_from <> ''
					UNION
					SELECT c.serial FROM certificates c JOIN lineage l ON c.renewed_from = l.serial AND c.renewed_from <> ''
				)
				SELECT serial FROM lineage)
			RETURNING serial`, serial, micros(at), r.Reason)
		if err != nil {
			return err
		}
		return emitRevoked(renewals, r.RenewalEvent, emit)
	})
	if err != nil {
		return nil, err
	}
	return serialsOf(renewals), nil
}

// emitRevoked sorts the serials revoked and queues the audit event of each.
func emitRevoked(serials []string, event func(store.Serial) audit.Event, emit emitFunc) error {
	slices.Sort(serials)
	for _, sn := range serials {
		evs, err := encodeEvent(event(store.Serial(sn)))
		if err != nil {
			return err
		}
		emit(evs...)
	}
	return nil
}

func serialsOf(list []string) []store.Serial {
	out := make([]store.Serial, len(list))
	for i, sn := range list {
		out[i] = store.Serial(sn)
	}
	return out
}

// Statements of RevokeMatching, constant for the SQLite writer.
const (
	revokeByName = `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
		WHERE status = 'valid' AND not_after > $2 AND id IN (SELECT cert_id FROM cert_names WHERE name = $1)
		RETURNING serial`
	revokeByIssuer = `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
		WHERE status = 'valid' AND not_after > $2 AND issuer = $1 AND ($4 = 0 OR issuer_generation = $4)
		RETURNING serial`
	// countRevocation moves RevocationRevision, in every transaction that
	// revokes.
	countRevocation = `UPDATE counters SET value = value + 1 WHERE name = 'revocations'`
)

// RevokeMatching revokes every valid, unexpired certificate with a name or
// from an issuer, with an audit record each, in one transaction.
func (s *Store) RevokeMatching(ctx context.Context, r store.MatchRevocation) ([]store.Serial, error) {
	if (r.Name == "") == (r.Issuer == "") {
		return nil, errors.New("sqlstore: revoke matching: give a name or an issuer")
	}
	if r.Reason < 0 || r.Reason > 10 || r.Event == nil {
		return nil, errors.New("sqlstore: revoke matching: needs an RFC 5280 reason and an Event")
	}
	at := r.At
	if at.IsZero() {
		at = s.now()
	}
	query, args := revokeByName, []any{r.Name, micros(at), r.Reason}
	if r.Issuer != "" {
		query, args = revokeByIssuer, []any{r.Issuer, micros(at), r.Reason, r.Generation}
	}
	var serials []string
	err := s.lockedTx(ctx, "revoke matching", func(w writer, emit emitFunc) error {
		var err error
		if serials, err = w.queryStrings(ctx, query, args...); err != nil {
			return err
		}
		if len(serials) > 0 {
			if _, err := w.exec(ctx, countRevocation); err != nil {
				return err
			}
		}
		return emitRevoked(serials, r.Event, emit)
	})
	if err != nil {
		return nil, err
	}
	return serialsOf(serials), nil
}

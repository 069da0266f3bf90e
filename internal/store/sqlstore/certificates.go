package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// certColumns are the columns scanCertificate reads, in order.
const certColumns = `serial, provisioner, issuer, subject, names, not_before, not_after, der,
	status, revoked_at, revocation_reason, renewed_from, created_at`

// CommitIssuances writes all items in one transaction. Under the write lock
// it reads which of the batch's token ids and serials are already recorded,
// then decides the items in order exactly as writing them one by one would:
// an item whose token id is recorded (before the batch or by an accepted
// earlier item) is refused as replayed; otherwise one whose serial is
// recorded is refused as a conflict and its token id stays unconsumed;
// otherwise it is accepted. The accepted items' token ids, certificates,
// names and audit events are then written with multi-row INSERTs.
func (s *Store) CommitIssuances(ctx context.Context, items []store.Issuance) ([]error, error) {
	for i, it := range items {
		if it.Certificate != nil {
			if err := checkCertificate(it.Certificate); err != nil {
				return nil, fmt.Errorf("sqlstore: commit issuances: item %d: %w", i, err)
			}
		}
	}
	results := make([]error, len(items))
	if len(items) == 0 {
		return results, nil
	}
	now := s.now()
	err := s.lockedTx(ctx, "commit issuances", func(tx *sql.Tx, emit func(...audit.Event)) error {
		var tokenIDs, serials []string
		for _, it := range items {
			if it.TokenID != "" {
				tokenIDs = append(tokenIDs, it.TokenID)
			}
			if it.Certificate != nil {
				serials = append(serials, it.Certificate.Serial)
			}
		}
		consumed, err := s.existing(ctx, tx, `SELECT id FROM tokens WHERE id IN`, tokenIDs)
		if err != nil {
			return fmt.Errorf("read token ids: %w", err)
		}
		recorded, err := s.existing(ctx, tx, `SELECT serial FROM certificates WHERE serial IN`, serials)
		if err != nil {
			return fmt.Errorf("read serials: %w", err)
		}

		var tokenRows, certRows, nameRows [][]any
		for i, it := range items {
			c := it.Certificate
			switch {
			case it.TokenID != "" && consumed[it.TokenID]:
				results[i] = fmt.Errorf("sqlstore: item %d: %w", i, store.ErrTokenReplayed)
				continue
			case c != nil && recorded[c.Serial]:
				results[i] = fmt.Errorf("sqlstore: item %d: serial %s: %w", i, c.Serial, store.ErrConflict)
				continue
			}
			results[i] = nil
			if it.TokenID != "" {
				consumed[it.TokenID] = true
				tokenRows = append(tokenRows, []any{it.TokenID, micros(it.TokenExpires)})
			}
			if c != nil {
				recorded[c.Serial] = true
				row, err := certRow(c, now)
				if err != nil {
					return fmt.Errorf("item %d: %w", i, err)
				}
				certRows = append(certRows, row)
				for _, name := range lookupNames(c) {
					nameRows = append(nameRows, []any{name, c.Serial})
				}
			}
			emit(it.Audit...)
		}
		// Plain INSERTs: under the write lock nothing else adds these rows,
		// so a unique violation here is a broken invariant and fails the
		// whole batch rather than being skipped.
		if err := s.insertRows(ctx, tx, `INSERT INTO tokens (id, expires_at)`, tokenRows); err != nil {
			return fmt.Errorf("consume token ids: %w", err)
		}
		if err := s.insertRows(ctx, tx, `INSERT INTO certificates (`+certColumns+`)`, certRows); err != nil {
			return fmt.Errorf("insert certificates: %w", err)
		}
		if err := s.insertRows(ctx, tx, `INSERT INTO cert_names (name, serial)`, nameRows); err != nil {
			return fmt.Errorf("index names: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// existing runs query, a SELECT of one text column ending in "IN", for keys
// in chunks, and returns the set of values found.
func (s *Store) existing(ctx context.Context, tx *sql.Tx, query string, keys []string) (map[string]bool, error) {
	found := make(map[string]bool, len(keys))
	var q strings.Builder
	for len(keys) > 0 {
		chunk := keys[:min(maxParams, len(keys))]
		keys = keys[len(chunk):]
		q.Reset()
		q.WriteString(query)
		q.WriteString(" (")
		args := make([]any, len(chunk))
		for i, k := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(s.dialect.placeholder(i + 1))
			args[i] = k
		}
		q.WriteByte(')')
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return nil, err
			}
			found[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

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
	return nil
}

// certRow is the row of certColumns recording c. An empty Status records a
// valid certificate; a zero CreatedAt records now.
func certRow(c *store.Certificate, now time.Time) ([]any, error) {
	names, err := json.Marshal(c.Names)
	if err != nil {
		return nil, fmt.Errorf("encode names: %w", err)
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
	return []any{
		c.Serial, c.Provisioner, c.Issuer, c.Subject, string(names),
		micros(c.NotBefore), micros(c.NotAfter), der,
		string(status), nullMicros(c.RevokedAt), c.RevocationReason, c.RenewedFrom, micros(created),
	}, nil
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
	err := row.Scan(&c.Serial, &c.Provisioner, &c.Issuer, &c.Subject, &names, &notBefore, &notAfter, &c.DER,
		&status, &revokedAt, &c.RevocationReason, &c.RenewedFrom, &created)
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
func (s *Store) GetCertificate(ctx context.Context, serial string) (store.Certificate, error) {
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
		where = append(where, "serial IN (SELECT serial FROM cert_names WHERE name = "+arg(f.Name)+")")
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
		page.Next = page.Certificates[limit-1].Serial
	}
	return page, nil
}

// RevokeCertificate marks a valid certificate revoked and appends ev in the
// same transaction. A zero at means now.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, reason int, at time.Time, ev audit.Event) error {
	if reason < 0 || reason > 10 {
		return fmt.Errorf("sqlstore: revoke certificate %s: reason %d is not an RFC 5280 CRLReason", serial, reason)
	}
	if at.IsZero() {
		at = s.now()
	}
	return s.lockedTx(ctx, "revoke certificate "+serial, func(tx *sql.Tx, emit func(...audit.Event)) error {
		res, err := tx.ExecContext(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial = $1 AND status = 'valid'`, serial, micros(at), reason)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM certificates WHERE serial = $1`, serial).Scan(&one)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return store.ErrNotFound
			case err != nil:
				return err
			default:
				return store.ErrAlreadyRevoked
			}
		}
		if ev.Type != "" {
			emit(ev)
		}
		return nil
	})
}

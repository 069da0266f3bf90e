package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// RevocationRevision reads the counter every revocation moves.
func (s *Store) RevocationRevision(ctx context.Context) (int64, error) {
	var v int64
	if err := s.read.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'revocations'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlstore: revocation revision: %w", err)
	}
	return v, nil
}

// The statements of RevokedCertificates.
const (
	revokedOfGeneration = `SELECT serial, revoked_at, revocation_reason, crl_shard FROM certificates
		WHERE status = 'revoked' AND issuer = $1 AND issuer_generation = $2 AND not_after > $3
		ORDER BY crl_shard, not_after, serial`
	revokedOfShard = `SELECT serial, revoked_at, revocation_reason, crl_shard FROM certificates
		WHERE status = 'revoked' AND issuer = $1 AND issuer_generation = $2 AND crl_shard = $4 AND not_after > $3
		ORDER BY not_after, serial`
)

// RevokedCertificates reads, through the covering partial index
// certificates_revoked, the revoked certificates of one issuer generation
// that have not expired.
func (s *Store) RevokedCertificates(ctx context.Context, issuer string, gen, shard int, now time.Time, fn func(store.RevokedEntry) error) error {
	// Two statements, so that one shard is a range of the index on its
	// first three columns (an OR would scan the generation).
	query, args := revokedOfGeneration, []any{issuer, gen, micros(now)}
	if shard != store.AllShards {
		query, args = revokedOfShard, []any{issuer, gen, micros(now), shard}
	}
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlstore: revoked certificates: %w", err)
	}
	defer rows.Close()
	var (
		serial    string
		revokedAt sql.NullInt64
		e         store.RevokedEntry
	)
	for rows.Next() {
		if err := rows.Scan(&serial, &revokedAt, &e.Reason, &e.Shard); err != nil {
			return fmt.Errorf("sqlstore: revoked certificates: %w", err)
		}
		e.Serial, e.RevokedAt = store.Serial(serial), fromNullMicros(revokedAt)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: revoked certificates: %w", err)
	}
	return nil
}

// putCRL replaces a scope's CRL only with a higher number.
const putCRL = `INSERT INTO crls (scope, number, this_update, next_update, revision, shards, der) VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (scope) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, next_update = excluded.next_update,
		revision = excluded.revision, shards = excluded.shards, der = excluded.der
	WHERE crls.number < excluded.number`

// PutCRL records r if its number is greater than the recorded one.
func (s *Store) PutCRL(ctx context.Context, r store.CRLRecord) (bool, error) {
	if r.Scope == "" || len(r.DER) == 0 || r.Number <= 0 {
		return false, errors.New("sqlstore: put crl: needs a scope, a positive number and the DER")
	}
	var stored bool
	err := s.writeTx(ctx, "put crl "+r.Scope, func(w writer) error {
		res, err := w.exec(ctx, putCRL, r.Scope, r.Number, micros(r.ThisUpdate), micros(r.NextUpdate), r.Revision, r.Shards, r.DER)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		stored = n > 0
		return err
	})
	return stored, err
}

// ListCRLs returns every recorded CRL without its DER.
func (s *Store) ListCRLs(ctx context.Context) ([]store.CRLRecord, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT scope, number, this_update, next_update, revision, shards FROM crls ORDER BY scope`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list crls: %w", err)
	}
	defer rows.Close()
	var out []store.CRLRecord
	for rows.Next() {
		var (
			r                  store.CRLRecord
			thisUpdate, nextUp int64
		)
		if err := rows.Scan(&r.Scope, &r.Number, &thisUpdate, &nextUp, &r.Revision, &r.Shards); err != nil {
			return nil, fmt.Errorf("sqlstore: list crls: %w", err)
		}
		r.ThisUpdate, r.NextUpdate = fromMicros(thisUpdate), fromMicros(nextUp)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list crls: %w", err)
	}
	return out, nil
}

// GetCRL returns one recorded CRL with its DER.
func (s *Store) GetCRL(ctx context.Context, scope string) (store.CRLRecord, error) {
	var (
		r                  store.CRLRecord
		thisUpdate, nextUp int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT scope, number, this_update, next_update, revision, shards, der FROM crls WHERE scope = $1`, scope).
		Scan(&r.Scope, &r.Number, &thisUpdate, &nextUp, &r.Revision, &r.Shards, &r.DER)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.CRLRecord{}, store.ErrNotFound
	case err != nil:
		return store.CRLRecord{}, fmt.Errorf("sqlstore: get crl %s: %w", scope, err)
	}
	r.ThisUpdate, r.NextUpdate = fromMicros(thisUpdate), fromMicros(nextUp)
	return r, nil
}

// assignGenerationBatch is how many certificates AssignIssuerGenerations
// reads and updates per transaction.
const assignGenerationBatch = 1000

// setGeneration records one certificate's generation.
const setGeneration = `UPDATE certificates SET issuer_generation = $2 WHERE id = $1`

// AssignIssuerGenerations gives certificates recorded before generations
// were their generation, a batch at a time through the partial index
// certificates_generation_unknown (empty once done, so the check at every
// start costs nothing).
func (s *Store) AssignIssuerGenerations(ctx context.Context, generation func(issuer string, der []byte) int) (int, error) {
	total := 0
	for {
		type row struct {
			id     int64
			issuer string
			der    []byte
		}
		var batch []row
		rows, err := s.read.QueryContext(ctx, `SELECT id, issuer, der FROM certificates WHERE issuer_generation = 0 ORDER BY id LIMIT $1`, assignGenerationBatch)
		if err != nil {
			return total, fmt.Errorf("sqlstore: assign issuer generations: %w", err)
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.issuer, &r.der); err != nil {
				rows.Close()
				return total, fmt.Errorf("sqlstore: assign issuer generations: %w", err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("sqlstore: assign issuer generations: %w", err)
		}
		if len(batch) == 0 {
			return total, nil
		}
		err = s.writeTx(ctx, "assign issuer generations", func(w writer) error {
			for _, r := range batch {
				gen := generation(r.issuer, r.der)
				if gen <= 0 {
					gen = -1
				}
				if _, err := w.exec(ctx, setGeneration, r.id, gen); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(batch)
	}
}

// RecordIssuerRevocation inserts r and its audit record, or nothing if the
// serial is recorded.
func (s *Store) RecordIssuerRevocation(ctx context.Context, r store.IssuerRevocation, ev audit.Event) error {
	if r.Serial == "" || r.Name == "" || r.Generation <= 0 || r.Reason < 0 || r.Reason > 10 {
		return fmt.Errorf("sqlstore: record issuer revocation: needs a serial, a name, a generation and an RFC 5280 reason")
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: record issuer revocation %s: %w", r.Serial, err)
	}
	return s.lockedTx(ctx, "record issuer revocation "+string(r.Serial), func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, `INSERT INTO issuer_revocations (serial, name, generation, revoked_at, reason) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (serial) DO NOTHING`, string(r.Serial), r.Name, r.Generation, micros(r.RevokedAt), r.Reason)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		emit(events...)
		return nil
	})
}

// IssuerRevocations returns every recorded intermediate revocation.
func (s *Store) IssuerRevocations(ctx context.Context) ([]store.IssuerRevocation, error) {
	return queryAll(ctx, s.read, "issuer revocations", func(row scanner) (store.IssuerRevocation, error) {
		var (
			r      store.IssuerRevocation
			serial string
			at     int64
		)
		err := row.Scan(&serial, &r.Name, &r.Generation, &at, &r.Reason)
		r.Serial, r.RevokedAt = store.Serial(serial), fromMicros(at)
		return r, err
	}, `SELECT serial, name, generation, revoked_at, reason FROM issuer_revocations ORDER BY serial`)
}

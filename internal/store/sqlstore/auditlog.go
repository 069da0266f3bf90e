package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/meshpki/meshpki/internal/audit"
)

// chainHead is the last record of the audit log.
type chainHead struct {
	seq  int64
	hash []byte
}

// lockHead reads the audit head inside a write transaction and holds it until
// the transaction ends, so no other writer appends in between.
func (s *Store) lockHead(ctx context.Context, tx *sql.Tx) (chainHead, error) {
	var h chainHead
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+s.dialect.lockRow).Scan(&h.seq, &h.hash)
	if err != nil {
		return h, fmt.Errorf("read audit head: %w", err)
	}
	return h, nil
}

// appendEvents seals events after head, writes them and moves the head. The
// events are copies; the caller's are left alone.
func (s *Store) appendEvents(ctx context.Context, tx *sql.Tx, head chainHead, events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now()
	rows := make([][]any, 0, len(events))
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = now
		}
		audit.Seal(&e, head.seq+1, head.hash)
		head = chainHead{seq: e.Seq, hash: e.Hash}
		var detail sql.NullString
		if len(e.Detail) > 0 {
			b, err := json.Marshal(e.Detail)
			if err != nil {
				return fmt.Errorf("encode audit detail: %w", err)
			}
			detail = sql.NullString{String: string(b), Valid: true}
		}
		rows = append(rows, []any{e.Seq, micros(e.Time), e.Type, e.Actor, e.Subject, e.Outcome, detail, e.PrevHash, e.Hash})
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO audit_events (seq, event_time, event_type, actor, subject, outcome, detail, prev_hash, hash)`, rows); err != nil {
		return fmt.Errorf("append audit events: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, head.seq, head.hash); err != nil {
		return fmt.Errorf("move audit head: %w", err)
	}
	return nil
}

// AppendAudit seals and appends events in order, in one transaction.
func (s *Store) AppendAudit(ctx context.Context, events ...audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	return s.lockedTx(ctx, "append audit", func(_ *sql.Tx, emit func(...audit.Event)) error {
		emit(events...)
		return nil
	})
}

// Page sizes of ListAudit.
const (
	defaultAuditPage = 1000
	maxAuditPage     = 10000
)

// ListAudit returns up to limit records with Seq > afterSeq, in Seq order.
// A limit of 0 or less means 1000; it is capped at 10000.
func (s *Store) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		limit = defaultAuditPage
	}
	limit = min(limit, maxAuditPage)
	rows, err := s.read.QueryContext(ctx, `SELECT seq, event_time, event_type, actor, subject, outcome, detail, prev_hash, hash
		FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	defer rows.Close()
	var events []audit.Event
	for rows.Next() {
		var (
			e      audit.Event
			at     int64
			detail sql.NullString
		)
		if err := rows.Scan(&e.Seq, &at, &e.Type, &e.Actor, &e.Subject, &e.Outcome, &detail, &e.PrevHash, &e.Hash); err != nil {
			return nil, fmt.Errorf("sqlstore: list audit: %w", err)
		}
		e.Time = fromMicros(at)
		if detail.Valid {
			if err := json.Unmarshal([]byte(detail.String), &e.Detail); err != nil {
				return nil, fmt.Errorf("sqlstore: list audit: record %d: decode detail: %w", e.Seq, err)
			}
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	return events, nil
}

// AuditHead returns the sequence number and hash of the last record appended.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	var h chainHead
	err := s.read.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.seq, &h.hash)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlstore: read audit head: %w", err)
	}
	return h.seq, h.hash, nil
}

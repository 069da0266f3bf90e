package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// auditColumns are the columns of audit_events, in order.
const auditColumns = `seq, event_time, event_type, actor, subject, outcome, detail, prev_hash, hash`

// chainHead is the last record of the audit log.
type chainHead struct {
	seq  int64
	hash []byte
}

// pendingEvent is an audit event to append with its detail already encoded,
// so that no JSON is written while the write lock is held.
type pendingEvent struct {
	event  audit.Event
	detail sql.NullString // JSON object; NULL when there is no detail
}

// encodeEvents returns events ready to append.
func encodeEvents(events ...audit.Event) ([]pendingEvent, error) {
	out := make([]pendingEvent, len(events))
	for i, e := range events {
		out[i].event = e
		if len(e.Detail) == 0 {
			continue
		}
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return nil, fmt.Errorf("encode audit detail: %w", err)
		}
		out[i].detail = sql.NullString{String: string(b), Valid: true}
	}
	return out, nil
}

// encodeEvent is encodeEvents of ev, or of nothing when its Type is empty.
func encodeEvent(ev audit.Event) ([]pendingEvent, error) {
	if ev.Type == "" {
		return nil, nil
	}
	return encodeEvents(ev)
}

// lockHead reads the audit head inside a write transaction and holds it until
// the transaction ends, so no other writer appends in between.
func (s *Store) lockHead(ctx context.Context, w writer) (chainHead, error) {
	var h chainHead
	if err := w.queryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+s.dialect.lockRow, nil, &h.seq, &h.hash); err != nil {
		return h, fmt.Errorf("read audit head: %w", err)
	}
	return h, nil
}

// SQLite appends records one statement each, which costs less there than one
// statement for many: that would need a statement journal.
const (
	sqliteAppendEvent = `INSERT INTO audit_events (` + auditColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqliteMoveHead    = `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`
)

// postgresAppendAudit returns a statement that runs the data-modifying
// common table expressions in with, if any, then appends the audit records
// given as one array per column ($first to $first+8) and moves the head to
// ($first+9, $first+10): one round trip.
func postgresAppendAudit(with string, first int) string {
	p := func(i int) string { return "$" + strconv.Itoa(first+i) }
	if with != "" {
		with += ", "
	}
	return `WITH ` + with + `appended AS (
		INSERT INTO audit_events (` + auditColumns + `)
		SELECT * FROM unnest(` + p(0) + `::bigint[], ` + p(1) + `::bigint[], ` + p(2) + `::text[], ` + p(3) + `::text[], ` +
		p(4) + `::text[], ` + p(5) + `::text[], ` + p(6) + `::text[], ` + p(7) + `::bytea[], ` + p(8) + `::bytea[])
	)
	UPDATE audit_head SET seq = ` + p(9) + `, hash = ` + p(10) + ` WHERE id = 1`
}

// postgresAppendEvents appends records and moves the head.
var postgresAppendEvents = postgresAppendAudit("", 1)

// seal seals events after head, stamping a zero Time with now, and returns
// them with the new head. The events are copies; the caller's are left alone.
func seal(head chainHead, events []pendingEvent, now time.Time) ([]audit.Event, chainHead) {
	sealed := make([]audit.Event, len(events))
	for i, p := range events {
		e := p.event
		if e.Time.IsZero() {
			e.Time = now
		}
		audit.Seal(&e, head.seq+1, head.hash)
		head = chainHead{seq: e.Seq, hash: e.Hash}
		sealed[i] = e
	}
	return sealed, head
}

// postgresAuditArgs are the arguments of postgresAppendAudit for the sealed
// events and the head after them.
func postgresAuditArgs(sealed []audit.Event, events []pendingEvent, head chainHead) []any {
	var (
		n                                 = len(sealed)
		seqs, times                       = make([]int64, n), make([]int64, n)
		types, actors, subjects, outcomes = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		details                           = make([]*string, n)
		prevHashes, hashes                = make([][]byte, n), make([][]byte, n)
	)
	for i, e := range sealed {
		seqs[i], times[i] = e.Seq, micros(e.Time)
		types[i], actors[i], subjects[i], outcomes[i] = e.Type, e.Actor, e.Subject, e.Outcome
		if events[i].detail.Valid {
			details[i] = &events[i].detail.String
		}
		prevHashes[i], hashes[i] = e.PrevHash, e.Hash
	}
	return []any{seqs, times, types, actors, subjects, outcomes, details, prevHashes, hashes, head.seq, head.hash}
}

// appendEvents seals events after head, writes them and moves the head.
func (s *Store) appendEvents(ctx context.Context, w writer, head chainHead, events []pendingEvent) error {
	if len(events) == 0 {
		return nil
	}
	sealed, head := seal(head, events, s.now())
	if w.sqlite == nil {
		if _, err := w.exec(ctx, postgresAppendEvents, postgresAuditArgs(sealed, events, head)...); err != nil {
			return fmt.Errorf("append audit events: %w", err)
		}
		return nil
	}
	for i, e := range sealed {
		if _, err := w.exec(ctx, sqliteAppendEvent,
			e.Seq, micros(e.Time), e.Type, e.Actor, e.Subject, e.Outcome, events[i].detail, e.PrevHash, e.Hash); err != nil {
			return fmt.Errorf("append audit event: %w", err)
		}
	}
	if _, err := w.exec(ctx, sqliteMoveHead, head.seq, head.hash); err != nil {
		return fmt.Errorf("move audit head: %w", err)
	}
	return nil
}

// AppendAudit seals and appends events in order, in one transaction.
func (s *Store) AppendAudit(ctx context.Context, events ...audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	pending, err := encodeEvents(events...)
	if err != nil {
		return fmt.Errorf("sqlstore: append audit: %w", err)
	}
	return s.lockedTx(ctx, "append audit", func(_ writer, emit emitFunc) error {
		emit(pending...)
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
	events, err := s.queryAudit(ctx, `SELECT `+auditColumns+`
		FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	return events, nil
}

// CertificateAudit returns up to limit records about the certificate
// serial, newest first: the issuance's own records, a few from the
// certificate's audit_seq on, and later ones from the partial index of
// migration 10. A limit of 0 or less means 100; it is capped at 1000.
func (s *Store) CertificateAudit(ctx context.Context, serial store.Serial, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	events, err := s.queryAudit(ctx, certificateAudit, string(serial), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: certificate audit: %w", err)
	}
	return events, nil
}

// maxIssuanceEvents is the most audit records one issuance may commit.
const maxIssuanceEvents = 8

// certificateAudit selects the records about certificate $1, newest first,
// at most $2. An issuance commits its records one after another, so the
// first branch reads at most maxIssuanceEvents rows by key.
var certificateAudit = `SELECT ` + auditColumns + ` FROM audit_events
		WHERE seq >= (SELECT audit_seq FROM certificates WHERE serial = $1)
			AND seq < (SELECT audit_seq FROM certificates WHERE serial = $1) + ` + strconv.Itoa(maxIssuanceEvents) + `
			AND subject = $1 AND ` + issuanceEvents + `
		UNION ALL
		SELECT ` + auditColumns + ` FROM audit_events WHERE subject = $1 AND ` + laterCertificateEvents + `
		ORDER BY seq DESC LIMIT $2`

// queryAudit runs a query that selects auditColumns.
func (s *Store) queryAudit(ctx context.Context, query string, args ...any) ([]audit.Event, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
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
			return nil, err
		}
		e.Time = fromMicros(at)
		if detail.Valid {
			if err := json.Unmarshal([]byte(detail.String), &e.Detail); err != nil {
				return nil, fmt.Errorf("record %d: decode detail: %w", e.Seq, err)
			}
		}
		events = append(events, e)
	}
	return events, rows.Err()
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

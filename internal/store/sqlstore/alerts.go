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

// Alert channels, rules, alert states and the outbox.

const (
	channelColumns      = `name, kind, is_default, public, sealed, created_at`
	ruleColumns         = `name, channel, spec, created_at`
	alertColumns        = `alert_key, rule, channel, certificate, check_id, threshold, severity, summary, labels, state, fired_at, last_notified, absent_since, resolved_at`
	notificationColumns = `id, channel, status, alerts, payload, attempts, next_attempt, created_at, delivered_at, failed_at, last_error`
)

// Statements of the alert writes, constant for the SQLite writer.
const (
	insertChannel      = `INSERT INTO alert_channels (` + channelColumns + `) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING`
	channelInUse       = `SELECT count(*) FROM alert_rules WHERE channel = $1`
	deleteChannel      = `DELETE FROM alert_channels WHERE name = $1`
	channelExists      = `SELECT count(*) FROM alert_channels WHERE name = $1`
	insertRule         = `INSERT INTO alert_rules (` + ruleColumns + `) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`
	insertNotification = `INSERT INTO alert_outbox (channel, status, alerts, payload, attempts, next_attempt, created_at, delivered_at, failed_at, last_error)
		VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, NULL, '')`
	dueNotification           = `SELECT id FROM alert_outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt <= $1 ORDER BY next_attempt, id LIMIT 1`
	dueNotificationSkipLocked = dueNotification + ` FOR UPDATE SKIP LOCKED`
	leaseNotification         = `UPDATE alert_outbox SET next_attempt = $2, claimed_at = $3 WHERE id = $1`
	finishNotification        = `UPDATE alert_outbox SET attempts = $2, next_attempt = $3, delivered_at = $4, failed_at = $5, last_error = $6,
		claimed_at = NULL WHERE id = $1`
	releaseNotifications = `UPDATE alert_outbox SET next_attempt = $1, claimed_at = NULL
		WHERE claimed_at IS NOT NULL AND delivered_at IS NULL AND failed_at IS NULL`
)

// upsertAlert inserts or replaces an alert by key. (One row a statement:
// with modernc.org/sqlite, multi-row upserts of 64 alerts measured half as
// fast.)
const upsertAlert = `INSERT INTO alerts (` + alertColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
	ON CONFLICT (alert_key) DO UPDATE SET rule = excluded.rule, channel = excluded.channel, certificate = excluded.certificate,
		check_id = excluded.check_id, threshold = excluded.threshold, severity = excluded.severity, summary = excluded.summary,
		labels = excluded.labels, state = excluded.state, fired_at = excluded.fired_at, last_notified = excluded.last_notified,
		absent_since = excluded.absent_since, resolved_at = excluded.resolved_at`

// CreateChannel stores c; store.ErrConflict if the name exists.
func (s *Store) CreateChannel(ctx context.Context, c store.AlertChannel, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create channel %s: %w", c.Name, err)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	return s.changeOneRow(ctx, "create channel "+c.Name, events, store.ErrConflict, insertChannel,
		c.Name, c.Kind, boolInt(c.Default), string(c.Public), nonNil(c.Sealed), micros(c.CreatedAt))
}

// DeleteChannel removes a channel no rule uses.
func (s *Store) DeleteChannel(ctx context.Context, name string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: delete channel %s: %w", name, err)
	}
	return s.lockedTx(ctx, "delete channel "+name, func(w writer, emit emitFunc) error {
		var n int64
		if err := w.queryRow(ctx, channelInUse, []any{name}, &n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d rules use it: %w", n, store.ErrConflict)
		}
		res, err := w.exec(ctx, deleteChannel, name)
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrNotFound); err != nil {
			return err
		}
		emit(events...)
		return nil
	})
}

func scanChannel(row scanner) (store.AlertChannel, error) {
	var (
		c       store.AlertChannel
		def     int
		public  string
		created int64
	)
	if err := row.Scan(&c.Name, &c.Kind, &def, &public, &c.Sealed, &created); err != nil {
		return c, err
	}
	c.Default, c.Public, c.CreatedAt = def == 1, []byte(public), fromMicros(created)
	return c, nil
}

// GetChannel returns a channel or store.ErrNotFound.
func (s *Store) GetChannel(ctx context.Context, name string) (store.AlertChannel, error) {
	c, err := scanChannel(s.read.QueryRowContext(ctx, `SELECT `+channelColumns+` FROM alert_channels WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("sqlstore: channel %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("sqlstore: get channel %s: %w", name, err)
	}
	return c, nil
}

// ListChannels returns every channel by name.
func (s *Store) ListChannels(ctx context.Context) ([]store.AlertChannel, error) {
	return queryAll(ctx, s.read, "list channels", scanChannel, `SELECT `+channelColumns+` FROM alert_channels ORDER BY name`)
}

// CreateRule stores r; store.ErrConflict if the name exists,
// store.ErrNotFound when its channel does not.
func (s *Store) CreateRule(ctx context.Context, r store.AlertRule, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create rule %s: %w", r.Name, err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	return s.lockedTx(ctx, "create rule "+r.Name, func(w writer, emit emitFunc) error {
		var n int64
		if err := w.queryRow(ctx, channelExists, []any{r.Channel}, &n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("channel %s: %w", r.Channel, store.ErrNotFound)
		}
		res, err := w.exec(ctx, insertRule, r.Name, r.Channel, string(r.Spec), micros(r.CreatedAt))
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrConflict); err != nil {
			return err
		}
		emit(events...)
		return nil
	})
}

// DeleteRule removes a rule; store.ErrNotFound if absent.
func (s *Store) DeleteRule(ctx context.Context, name string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: delete rule %s: %w", name, err)
	}
	return s.changeOneRow(ctx, "delete rule "+name, events, store.ErrNotFound, `DELETE FROM alert_rules WHERE name = $1`, name)
}

// ListRules returns every rule by name.
func (s *Store) ListRules(ctx context.Context) ([]store.AlertRule, error) {
	return queryAll(ctx, s.read, "list rules", func(row scanner) (store.AlertRule, error) {
		var (
			r       store.AlertRule
			spec    string
			created int64
		)
		err := row.Scan(&r.Name, &r.Channel, &spec, &created)
		r.Spec, r.CreatedAt = []byte(spec), fromMicros(created)
		return r, err
	}, `SELECT `+ruleColumns+` FROM alert_rules ORDER BY name`)
}

func scanAlert(row scanner) (store.Alert, error) {
	var (
		a                              store.Alert
		labels                         string
		fired                          int64
		notified, absent, resolvedTime sql.NullInt64
	)
	if err := row.Scan(&a.Key, &a.Rule, &a.Channel, &a.Certificate, &a.Check, &a.Threshold, &a.Severity, &a.Summary,
		&labels, &a.State, &fired, &notified, &absent, &resolvedTime); err != nil {
		return a, err
	}
	a.Labels, a.FiredAt = []byte(labels), fromMicros(fired)
	a.LastNotified, a.AbsentSince, a.ResolvedAt = fromNullMicros(notified), fromNullMicros(absent), fromNullMicros(resolvedTime)
	return a, nil
}

// ListAlerts returns one page of alerts ordered by key.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	alerts, err := queryAll(ctx, s.read, "list alerts", scanAlert, `SELECT `+alertColumns+` FROM alerts
		WHERE ($1 = '' OR state = $1) AND alert_key > $2 ORDER BY alert_key LIMIT $3`, f.State, f.After, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(alerts) > limit {
		alerts = alerts[:limit]
		next = alerts[limit-1].Key
	}
	return alerts, next, nil
}

// ApplyAlerts writes alert states and queues notifications in one
// transaction.
func (s *Store) ApplyAlerts(ctx context.Context, alerts []store.Alert, queue []store.Notification) error {
	if len(alerts) == 0 && len(queue) == 0 {
		return nil
	}
	now := s.now()
	return s.writeTx(ctx, "apply alerts", func(w writer) error {
		if w.tx != nil {
			if err := upsertAlertsPostgres(ctx, w.tx, alerts); err != nil {
				return err
			}
		} else {
			for _, a := range alerts {
				if _, err := w.exec(ctx, upsertAlert, a.Key, a.Rule, a.Channel, a.Certificate, a.Check, a.Threshold, a.Severity, a.Summary,
					alertLabels(a), a.State, micros(a.FiredAt), nullMicros(a.LastNotified), nullMicros(a.AbsentSince), nullMicros(a.ResolvedAt)); err != nil {
					return err
				}
			}
		}
		for _, n := range queue {
			created := n.CreatedAt
			if created.IsZero() {
				created = now
			}
			next := n.NextAttempt
			if next.IsZero() {
				next = created
			}
			if _, err := w.exec(ctx, insertNotification, n.Channel, n.Status, n.Alerts, string(n.Payload), micros(next), micros(created)); err != nil {
				return err
			}
		}
		return nil
	})
}

// alertLabels is a's labels as stored: a JSON object.
func alertLabels(a store.Alert) string {
	if len(a.Labels) == 0 {
		return "{}"
	}
	return string(a.Labels)
}

// upsertAlertsBatch upserts up to alertBatch alerts in one PostgreSQL
// statement, one array per column: a first evaluation over a large
// inventory writes 100,000 alerts and more, which one statement each
// would take as many round trips.
const (
	upsertAlertsBatch = `INSERT INTO alerts (` + alertColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		$9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[])
	ON CONFLICT (alert_key) DO UPDATE SET rule = excluded.rule, channel = excluded.channel, certificate = excluded.certificate,
		check_id = excluded.check_id, threshold = excluded.threshold, severity = excluded.severity, summary = excluded.summary,
		labels = excluded.labels, state = excluded.state, fired_at = excluded.fired_at, last_notified = excluded.last_notified,
		absent_since = excluded.absent_since, resolved_at = excluded.resolved_at`
	alertBatch = 5000
)

// upsertAlertsPostgres writes alerts in batches, in their order. A key
// given twice keeps its last state, as one statement per alert would (one
// statement cannot update a row twice).
func upsertAlertsPostgres(ctx context.Context, tx *sql.Tx, alerts []store.Alert) error {
	last := make(map[string]int, len(alerts))
	for i, a := range alerts {
		last[a.Key] = i
	}
	var cols [10][]string
	var times [4][]*int64
	flush := func() error {
		if len(cols[0]) == 0 {
			return nil
		}
		args := make([]any, 0, 14)
		for _, c := range cols {
			args = append(args, c)
		}
		for _, t := range times {
			args = append(args, t)
		}
		if _, err := tx.ExecContext(ctx, upsertAlertsBatch, args...); err != nil {
			return err
		}
		cols, times = [10][]string{}, [4][]*int64{}
		return nil
	}
	opt := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		v := micros(t)
		return &v
	}
	for i, a := range alerts {
		if last[a.Key] != i {
			continue
		}
		for j, v := range [10]string{a.Key, a.Rule, a.Channel, a.Certificate, a.Check, a.Threshold, a.Severity, a.Summary, alertLabels(a), a.State} {
			cols[j] = append(cols[j], v)
		}
		fired := micros(a.FiredAt)
		for j, v := range [4]*int64{&fired, opt(a.LastNotified), opt(a.AbsentSince), opt(a.ResolvedAt)} {
			times[j] = append(times[j], v)
		}
		if len(cols[0]) == alertBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func scanNotification(row scanner) (store.Notification, error) {
	var (
		n                  store.Notification
		payload            string
		next, created      int64
		delivered, failedT sql.NullInt64
	)
	if err := row.Scan(&n.ID, &n.Channel, &n.Status, &n.Alerts, &payload, &n.Attempts, &next, &created, &delivered, &failedT, &n.LastError); err != nil {
		return n, err
	}
	n.Payload, n.NextAttempt, n.CreatedAt = []byte(payload), fromMicros(next), fromMicros(created)
	n.DeliveredAt, n.FailedAt = fromNullMicros(delivered), fromNullMicros(failedT)
	return n, nil
}

// ClaimNotification leases the notification due longest.
func (s *Store) ClaimNotification(ctx context.Context, now time.Time, lease time.Duration) (store.Notification, error) {
	due := dueNotification
	if s.sqlite == nil {
		due = dueNotificationSkipLocked
	}
	// Most looks find nothing due: ask the read pool first, and take a
	// write transaction only to claim.
	var first int64
	if err := s.read.QueryRowContext(ctx, dueNotification, micros(now)).Scan(&first); errors.Is(err, sql.ErrNoRows) {
		return store.Notification{}, store.ErrNotFound
	} else if err != nil {
		return store.Notification{}, fmt.Errorf("sqlstore: claim notification: %w", err)
	}
	var id int64
	err := s.writeTx(ctx, "claim notification", func(w writer) error {
		if err := w.queryRow(ctx, due, []any{micros(now)}, &id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		_, err := w.exec(ctx, leaseNotification, id, micros(now.Add(lease)), micros(now))
		return err
	})
	if err != nil {
		return store.Notification{}, err
	}
	n, err := scanNotification(s.read.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM alert_outbox WHERE id = $1`, id))
	if err != nil {
		return n, fmt.Errorf("sqlstore: claim notification %d: %w", id, err)
	}
	return n, nil
}

// FinishNotification records an attempt.
func (s *Store) FinishNotification(ctx context.Context, n store.Notification) error {
	return s.writeTx(ctx, "finish notification", func(w writer) error {
		res, err := w.exec(ctx, finishNotification, n.ID, n.Attempts, micros(n.NextAttempt), nullMicros(n.DeliveredAt), nullMicros(n.FailedAt), n.LastError)
		if err != nil {
			return err
		}
		return expectOneRow(res, store.ErrNotFound)
	})
}

// ListNotifications returns the latest notifications, newest first.
func (s *Store) ListNotifications(ctx context.Context, limit int) ([]store.Notification, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return queryAll(ctx, s.read, "list notifications", scanNotification, `SELECT `+notificationColumns+` FROM alert_outbox ORDER BY id DESC LIMIT $1`, limit)
}

// ReleaseNotifications makes every claimed, unfinished notification due
// at now.
func (s *Store) ReleaseNotifications(ctx context.Context, now time.Time) (int, error) {
	return s.release(ctx, "notifications", releaseNotifications, now)
}

// release runs one of the statements that make what a dead leader left
// claimed due at now, and returns how many rows it released.
func (s *Store) release(ctx context.Context, what, stmt string, now time.Time) (int, error) {
	var n int64
	err := s.writeTx(ctx, "release "+what, func(w writer) error {
		res, err := w.exec(ctx, stmt, micros(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

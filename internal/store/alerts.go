package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// AlertChannel is where alert notifications go.
type AlertChannel struct {
	Name string
	Kind string // "webhook", "slack" or "email"
	// Default channels receive the built-in alerts (the CA's own
	// certificates, overdue renewals).
	Default bool
	// Public is the channel's configuration that may be shown (JSON);
	// Sealed the whole configuration, secrets included, sealed by the
	// server (keys.Sealer) bound to the channel's name.
	Public    []byte
	Sealed    []byte
	CreatedAt time.Time
}

// AlertRule says which certificates and findings alert which channel; Spec
// is the rule as package notify writes it (JSON).
type AlertRule struct {
	Name      string
	Channel   string
	Spec      []byte
	CreatedAt time.Time
}

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Alert is one alert: a rule, a certificate, a check and a threshold.
type Alert struct {
	// Key identifies the alert: the same rule, certificate, check and
	// threshold always make the same key.
	Key         string
	Rule        string
	Channel     string
	Certificate string // "issued:<serial>", "scanned:<fingerprint>" or "ca:<name>"
	Check       string
	Threshold   string // "" unless the check has thresholds
	Severity    string
	Summary     string
	// Labels are the alert's labels as JSON (an object of strings).
	Labels       []byte
	State        string
	FiredAt      time.Time
	LastNotified time.Time
	// AbsentSince is when the condition was first found gone, while the
	// alert still fires (zero while it holds).
	AbsentSince time.Time
	ResolvedAt  time.Time
}

// AlertFilter selects alerts for ListAlerts.
type AlertFilter struct {
	State string // "" for both
	After string // the Next of the previous page
	Limit int    // 0 means 1000, capped at 10000
}

// Notification is one message to one channel, kept in the outbox until it
// is delivered, and as history after.
type Notification struct {
	ID          int64
	Channel     string
	Status      string // the state it announces: firing or resolved
	Alerts      int    // how many alerts it carries
	Payload     []byte // JSON, as package notify builds it
	Attempts    int
	NextAttempt time.Time
	CreatedAt   time.Time
	DeliveredAt time.Time // zero until delivered
	FailedAt    time.Time // zero unless given up
	LastError   string
}

// Alerts keeps alert channels, rules, alert states and the outbox. Channel
// and rule changes append their audit event in the same transaction.
type Alerts interface {
	CreateChannel(ctx context.Context, c AlertChannel, ev audit.Event) error // ErrConflict if the name exists
	DeleteChannel(ctx context.Context, name string, ev audit.Event) error    // ErrNotFound; ErrConflict while a rule uses it
	GetChannel(ctx context.Context, name string) (AlertChannel, error)       // ErrNotFound
	ListChannels(ctx context.Context) ([]AlertChannel, error)                // by name
	CreateRule(ctx context.Context, r AlertRule, ev audit.Event) error       // ErrConflict if the name exists; ErrNotFound without its channel
	DeleteRule(ctx context.Context, name string, ev audit.Event) error       // ErrNotFound
	ListRules(ctx context.Context) ([]AlertRule, error)                      // by name

	// ListAlerts returns one page of alerts ordered by key.
	ListAlerts(ctx context.Context, f AlertFilter) ([]Alert, string, error)
	// ApplyAlerts writes alert states (inserted or replaced by key; keys
	// distinct) and queues notifications, in one transaction.
	ApplyAlerts(ctx context.Context, alerts []Alert, queue []Notification) error
	// ClaimNotification takes the undelivered notification due longest at
	// now and moves its next attempt to now+lease, so that no other
	// replica takes it meanwhile; ErrNotFound when none is due.
	ClaimNotification(ctx context.Context, now time.Time, lease time.Duration) (Notification, error)
	// FinishNotification records an attempt: n.Attempts, n.NextAttempt,
	// n.DeliveredAt, n.FailedAt and n.LastError as the caller set them.
	FinishNotification(ctx context.Context, n Notification) error
	// ListNotifications returns the latest notifications, newest first.
	ListNotifications(ctx context.Context, limit int) ([]Notification, error)

	// ReleaseNotifications makes every notification claimed and not
	// finished due at now, and returns how many: the deliveries a leader
	// that died left unfinished, which the next leader makes at once.
	ReleaseNotifications(ctx context.Context, now time.Time) (int, error)
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of the Deliverer.
const (
	// DefaultMaxAge is how long a notification is retried before it is
	// given up (and kept, failed, in the history).
	DefaultMaxAge = 7 * 24 * time.Hour
	// deliveryLease is how long a claimed notification is left to its
	// claimer before another replica may take it.
	deliveryLease = 2 * time.Minute
)

// Backoff is the wait before retry n (1 for the first retry): 30s doubling
// to at most 1h.
func Backoff(n int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// Deliverer sends the outbox: each due notification to its channel, once
// across replicas, retried with Backoff until delivered or MaxAge old.
type Deliverer struct {
	Store  store.Alerts
	Sender *Sender
	// Sealer opens channel configurations.
	Sealer *keys.Sealer
	// Tick is how often the outbox is looked at (default 2s).
	Tick time.Duration
	// MaxAge (default DefaultMaxAge).
	MaxAge time.Duration
	// Backoff is the wait before retry n (default: the function Backoff).
	Backoff func(n int) time.Duration
	Clock   func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics

	waker periodic.Waker
}

func (d *Deliverer) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

func (d *Deliverer) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// DeliverDue sends every notification due now and returns how many were
// delivered and how many failed.
func (d *Deliverer) DeliverDue(ctx context.Context) (delivered, failed int) {
	for ctx.Err() == nil {
		n, err := d.Store.ClaimNotification(ctx, d.now(), deliveryLease)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				d.log().Error("alerts: claim notification", "error", err)
			}
			return
		}
		if d.deliver(ctx, n) {
			delivered++
		} else {
			failed++
		}
	}
	return
}

// deliver makes one attempt at n and records it.
func (d *Deliverer) deliver(ctx context.Context, n store.Notification) bool {
	kind, err := d.send(ctx, n)
	if ctx.Err() != nil {
		// The term ended (or the server stops) during the attempt: it is
		// not counted, and the claim stays for the next leader to take
		// back at once (Run).
		return false
	}
	now := d.now()
	n.Attempts++
	result := "delivered"
	if err == nil {
		n.DeliveredAt, n.LastError = now, ""
	} else {
		n.LastError = ca.Clip(err.Error())
		maxAge := d.MaxAge
		if maxAge <= 0 {
			maxAge = DefaultMaxAge
		}
		if now.Sub(n.CreatedAt) >= maxAge {
			n.FailedAt = now
			result = "failed"
		} else {
			backoff := d.Backoff
			if backoff == nil {
				backoff = Backoff
			}
			n.NextAttempt = now.Add(backoff(n.Attempts))
			result = "retry"
		}
		d.log().Warn("alert notification not delivered", "channel", n.Channel, "attempt", n.Attempts, "error", n.LastError, "next", n.NextAttempt)
	}
	d.Metrics.attempt(kind, result)
	if err := d.Store.FinishNotification(context.WithoutCancel(ctx), n); err != nil {
		d.log().Error("alerts: record delivery", "error", err)
	}
	return result == "delivered"
}

func (d *Deliverer) send(ctx context.Context, n store.Notification) (kind string, err error) {
	ch, err := d.Store.GetChannel(ctx, n.Channel)
	if err != nil {
		return "", err
	}
	cfg, err := OpenConfig(d.Sealer, ch)
	if err != nil {
		return ch.Kind, err
	}
	var m Message
	if err := json.Unmarshal(n.Payload, &m); err != nil {
		return ch.Kind, err
	}
	m.Key = NotificationKey(n)
	return ch.Kind, d.Sender.Send(ctx, ch.Name, ch.Kind, cfg, m)
}

// NotificationKey identifies n across its attempts and leaders: its id
// and the microsecond it was queued (ids alone restart with a new store).
// Only letters, digits and dashes, so it fits a header and a Message-ID.
func NotificationKey(n store.Notification) string {
	return "n" + strconv.FormatInt(n.ID, 10) + "-" + strconv.FormatInt(n.CreatedAt.UnixMicro(), 10)
}

// OpenConfig unseals a stored channel's configuration.
func OpenConfig(s *keys.Sealer, ch store.AlertChannel) (Config, error) {
	plain, err := s.Open("alert-channel:"+ch.Name, ch.Sealed)
	if err != nil {
		return Config{}, err
	}
	return decodeConfig(plain)
}

// Wake makes Run look at the outbox now.
func (d *Deliverer) Wake() { d.waker.Wake() }

// Run delivers until ctx ends. One replica at a time runs it (the elected
// leader, internal/leader): it first makes due what an earlier run left
// claimed and unfinished, a leader that died while sending.
func (d *Deliverer) Run(ctx context.Context) error {
	tick := d.Tick
	if tick <= 0 {
		tick = 2 * time.Second
	}
	if n, err := d.Store.ReleaseNotifications(ctx, d.now()); err != nil && ctx.Err() == nil {
		d.log().Error("alerts: take back unfinished deliveries", "error", err)
	} else if n > 0 {
		d.log().Info("alerts: took back deliveries an earlier leader left unfinished", "notifications", n)
	}
	return periodic.Run(ctx, tick, &d.waker, func(ctx context.Context) { d.DeliverDue(ctx) })
}

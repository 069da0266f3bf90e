package notify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of the Evaluator.
const (
	// DefaultResolveAfter is how long a firing alert's condition must stay
	// gone before the alert resolves.
	DefaultResolveAfter = 10 * time.Minute
	// DefaultEvaluateEvery is how often alerts are evaluated.
	DefaultEvaluateEvery = time.Minute
	// maxAlertsPerMessage splits a large change into several messages.
	maxAlertsPerMessage = 500
)

// Evaluator turns the inventory's findings into alerts: one per rule,
// certificate, check and threshold, sent when it starts firing and again
// every repeat interval, resolved once its condition has been gone for
// ResolveAfter. Changes of state and the notifications they cause are
// written in one transaction, so a crash loses neither.
type Evaluator struct {
	Store     store.Alerts
	Inventory *monitor.Inventory
	// CA returns the CA's own certificates (root and intermediates), which
	// the built-in rule watches.
	CA func() []*x509.Certificate
	// ResolveAfter is the hysteresis (default DefaultResolveAfter).
	ResolveAfter time.Duration
	// Every is how often Run evaluates (default DefaultEvaluateEvery).
	Every  time.Duration
	Clock  func() time.Time
	Logger *slog.Logger
	// Metrics, if set, is updated after each evaluation.
	Metrics *Metrics
	// Queued, if set, is called after an evaluation queued notifications
	// (the server wakes the Deliverer with it).
	Queued func()

	waker periodic.Waker
}

// Outcome is what one evaluation did.
type Outcome struct {
	Certificates int // certificates whose findings were checked
	Firing       int // alerts firing after it
	Fired        int // alerts that started firing
	Repeated     int // firing alerts sent again
	Resolved     int // alerts resolved (with a notice)
	Superseded   int // alerts replaced by a nearer threshold (no notice)
	Messages     int // notifications queued
}

func (e *Evaluator) now() time.Time {
	if e.Clock != nil {
		return e.Clock()
	}
	return time.Now()
}

func (e *Evaluator) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// rule is a rule as evaluated: a stored one or the built-in one of a
// default channel.
type rule struct {
	name, channel string
	spec          RuleSpec
	builtin       bool
}

func (r rule) applies(sub subject, f monitor.Finding, now time.Time) bool {
	if r.builtin {
		return f.Severity >= monitor.Warning && builtinApplies(sub, f)
	}
	return r.spec.matches(sub) && r.spec.alerts(f, sub.notAfter.Sub(now))
}

// wanted is an alert the findings call for now.
type wanted struct {
	alert  store.Alert
	labels map[string]string
}

// alertKey identifies an alert across evaluations.
func alertKey(ruleName, channel, cert, check, threshold string) string {
	sum := sha256.Sum256([]byte(ruleName + "\x00" + channel + "\x00" + cert + "\x00" + check + "\x00" + threshold))
	return hex.EncodeToString(sum[:16])
}

// rules returns the stored rules and the built-in rule of each default
// channel.
func (e *Evaluator) rules(ctx context.Context) ([]rule, error) {
	stored, err := e.Store.ListRules(ctx)
	if err != nil {
		return nil, err
	}
	var out []rule
	for _, r := range stored {
		spec, err := ParseRule(r)
		if err != nil {
			e.log().Warn("alert rule skipped", "rule", r.Name, "error", err)
			continue
		}
		out = append(out, rule{name: r.Name, channel: r.Channel, spec: spec})
	}
	channels, err := e.Store.ListChannels(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range channels {
		if c.Default {
			out = append(out, rule{name: builtinRule, channel: c.Name, spec: builtinSpec(), builtin: true})
		}
	}
	return out, nil
}

// Evaluate compares what the findings call for with the alerts firing,
// and writes the difference with its notifications.
func (e *Evaluator) Evaluate(ctx context.Context) (Outcome, error) {
	var out Outcome
	now := e.now()
	rules, err := e.rules(ctx)
	if err != nil {
		return out, err
	}
	want := map[string]wanted{}
	cache := monitor.ChainCache{}
	consider := func(sub subject, findings []monitor.Finding) {
		out.Certificates++
		for _, f := range findings {
			for _, r := range rules {
				if !r.applies(sub, f, now) {
					continue
				}
				threshold := ""
				if f.Threshold > 0 {
					threshold = duration.Format(f.Threshold)
				}
				key := alertKey(r.name, r.channel, sub.key, f.Check, threshold)
				labels, _ := json.Marshal(sub.labels)
				want[key] = wanted{labels: sub.labels, alert: store.Alert{Key: key, Rule: r.name, Channel: r.channel, Certificate: sub.key,
					Check: f.Check, Threshold: threshold, Severity: f.Severity.String(), Summary: ca.Clip(sub.summaryOf + ": " + f.Message),
					Labels: labels, State: store.AlertFiring}}
			}
		}
	}
	if len(rules) > 0 {
		if err := e.scanInventory(ctx, rules, now, cache, consider); err != nil {
			return out, err
		}
		if e.CA != nil {
			for _, c := range e.CA() {
				sub := subject{key: "ca:" + monitor.Fingerprint256(c)[:16], source: "ca", names: monitor.Names(c), issuer: c.Issuer.String(),
					notAfter: c.NotAfter, summaryOf: "CA certificate " + c.Subject.CommonName,
					labels: map[string]string{"subject": c.Subject.String(), "source": "ca"}}
				consider(sub, e.Inventory.Policy.Timely([]*x509.Certificate{c}))
			}
		}
	}

	firing, err := e.firing(ctx)
	if err != nil {
		return out, err
	}
	repeat := map[string]time.Duration{builtinRule: DefaultRepeat}
	for _, r := range rules {
		if !r.builtin {
			repeat[r.name] = r.spec.repeat()
		}
	}
	resolveAfter := e.ResolveAfter
	if resolveAfter <= 0 {
		resolveAfter = DefaultResolveAfter
	}
	// A nearer threshold of the same rule, certificate and check supersedes
	// a farther one: the alert moves on, it is not resolved.
	group := func(a store.Alert) string {
		return a.Rule + "\x00" + a.Channel + "\x00" + a.Certificate + "\x00" + a.Check
	}
	wantedGroups := map[string]bool{}
	for _, w := range want {
		wantedGroups[group(w.alert)] = true
	}

	var changes []store.Alert
	outbox := map[string]map[string][]AlertView{} // channel → status → alerts
	notify := func(a store.Alert, labels map[string]string) {
		if outbox[a.Channel] == nil {
			outbox[a.Channel] = map[string][]AlertView{}
		}
		if labels == nil {
			_ = json.Unmarshal(a.Labels, &labels) // written by Evaluate
		}
		outbox[a.Channel][a.State] = append(outbox[a.Channel][a.State], viewOf(a, labels))
	}
	for key, w := range want {
		a := w.alert
		cur, isFiring := firing[key]
		switch {
		case !isFiring:
			a.FiredAt, a.LastNotified = now, now
			changes = append(changes, a)
			notify(a, w.labels)
			out.Fired++
		case now.Sub(cur.LastNotified) >= repeat[cur.Rule]:
			a.FiredAt, a.LastNotified = cur.FiredAt, now
			changes = append(changes, a)
			notify(a, w.labels)
			out.Repeated++
		case !cur.AbsentSince.IsZero() || cur.Severity != a.Severity:
			// Back, or graver: its summary is brought up to date too.
			// (The summary alone, "expires in 5d3h", changes at every
			// evaluation, and is rewritten when the alert is sent again.)
			a.FiredAt, a.LastNotified = cur.FiredAt, cur.LastNotified
			changes = append(changes, a)
		}
	}
	for key, cur := range firing {
		if _, ok := want[key]; ok {
			continue
		}
		switch {
		case cur.Threshold != "" && wantedGroups[group(cur)]:
			cur.State, cur.ResolvedAt, cur.AbsentSince = store.AlertResolved, now, time.Time{}
			changes = append(changes, cur)
			out.Superseded++
		case cur.AbsentSince.IsZero():
			cur.AbsentSince = now
			changes = append(changes, cur)
		case now.Sub(cur.AbsentSince) >= resolveAfter:
			cur.State, cur.ResolvedAt = store.AlertResolved, now
			changes = append(changes, cur)
			notify(cur, nil)
			out.Resolved++
		}
	}
	var queue []store.Notification
	channels := make([]string, 0, len(outbox))
	for ch := range outbox {
		channels = append(channels, ch)
	}
	slices.Sort(channels)
	for _, ch := range channels {
		for _, status := range []string{store.AlertFiring, store.AlertResolved} {
			views := outbox[ch][status]
			slices.SortFunc(views, func(a, b AlertView) int { return strings.Compare(a.Key, b.Key) })
			for len(views) > 0 {
				n := min(len(views), maxAlertsPerMessage)
				payload, err := json.Marshal(Message{Status: status, Alerts: views[:n]})
				if err != nil {
					return out, err
				}
				queue = append(queue, store.Notification{Channel: ch, Status: status, Alerts: n, Payload: payload, CreatedAt: now, NextAttempt: now})
				views = views[n:]
			}
		}
	}
	out.Messages = len(queue)
	// In key order: the store's B-tree of alerts is written front to back
	// rather than at random, and the order is the same on every replica.
	slices.SortFunc(changes, func(a, b store.Alert) int { return strings.Compare(a.Key, b.Key) })
	if err := e.Store.ApplyAlerts(ctx, changes, queue); err != nil {
		return out, err
	}
	if len(queue) > 0 && e.Queued != nil {
		e.Queued()
	}
	out.Firing = len(firing) + out.Fired - out.Resolved - out.Superseded
	if e.Metrics != nil {
		e.Metrics.evaluated(out)
	}
	return out, nil
}

// scanInventory calls consider for every certificate in service that a
// rule could alert on: those expiring within the widest window any check
// looks at, and scanned ones with findings that do not move with time.
func (e *Evaluator) scanInventory(ctx context.Context, rules []rule, now time.Time, cache monitor.ChainCache, consider func(subject, []monitor.Finding)) error {
	window := slices.Max(append(slices.Clone(e.Inventory.Policy.Warn), monitor.DefaultWarn...))
	for _, r := range rules {
		window = max(window, r.spec.Within.Std())
	}
	seen := map[string]bool{}
	pass := func(f store.InventoryFilter) error {
		f.Limit = 1000
		for {
			items, err := e.Inventory.Store.ListInventory(ctx, f)
			if err != nil {
				return err
			}
			for _, it := range items.Items {
				sub := subjectOf(it)
				if seen[sub.key] {
					continue
				}
				seen[sub.key] = true
				findings, err := e.Inventory.FindingsWith(ctx, it, cache)
				if err != nil {
					return err
				}
				if len(findings) > 0 {
					consider(sub, findings)
				}
			}
			if items.Next == "" {
				return nil
			}
			f.After = items.Next
		}
	}
	// A day beyond the window, so that a threshold crossed between two
	// evaluations is not missed.
	// One source at a time: a listing of both reads a page of each to
	// return one.
	for _, src := range []store.InventorySource{store.SourceIssued, store.SourceScanned} {
		if err := pass(store.InventoryFilter{Source: src, Active: true, ExpiringBefore: now.Add(window + 24*time.Hour)}); err != nil {
			return err
		}
	}
	return pass(store.InventoryFilter{Source: store.SourceScanned, Active: true, WithFindings: true})
}

// subjectOf is what rules match an inventory item by.
func subjectOf(it store.InventoryItem) subject {
	names := slices.Clone(it.Names)
	cn := it.Subject
	if it.Source == store.SourceScanned {
		cn = monitor.CommonName(it.Subject)
	}
	if cn != "" {
		names = append([]string{cn}, names...)
	}
	sub := subject{source: string(it.Source), names: names, issuer: it.Issuer, notAfter: it.NotAfter, labels: map[string]string{}}
	// The scan's labels first: the certificate's own facts win a clash.
	for k, v := range it.Labels {
		sub.labels[k] = v
	}
	sub.labels["source"], sub.labels["subject"], sub.labels["issuer"] = string(it.Source), ca.Clip(it.Subject), ca.Clip(it.Issuer)
	if it.Provisioner != "" {
		sub.labels["provisioner"] = it.Provisioner
	}
	if len(names) > 0 {
		sub.labels["name"] = ca.Clip(names[0])
	}
	switch it.Source {
	case store.SourceIssued:
		sub.key = "issued:" + string(it.Serial)
		sub.labels["serial"] = string(it.Serial)
		sub.summaryOf = fmt.Sprintf("%s (serial %s)", firstOr(names, it.Subject), it.Serial)
	default:
		sub.key = "scanned:" + it.Fingerprint
		sub.labels["fingerprint"] = it.Fingerprint
		sub.summaryOf = firstOr(names, it.Subject)
	}
	return sub
}

func firstOr(names []string, fallback string) string {
	if len(names) > 0 {
		return names[0]
	}
	return fallback
}

// firing returns every firing alert by key.
func (e *Evaluator) firing(ctx context.Context) (map[string]store.Alert, error) {
	out := map[string]store.Alert{}
	f := store.AlertFilter{State: store.AlertFiring, Limit: 10000}
	for {
		alerts, next, err := e.Store.ListAlerts(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, a := range alerts {
			out[a.Key] = a
		}
		if next == "" {
			return out, nil
		}
		f.After = next
	}
}

// Wake makes Run evaluate now rather than at its next tick (after a scan).
func (e *Evaluator) Wake() { e.waker.Wake() }

// Run evaluates at once and then every Every (or when woken) until ctx
// ends. One replica at a time runs it: the elected leader
// (internal/leader).
func (e *Evaluator) Run(ctx context.Context) error {
	every := e.Every
	if every <= 0 {
		every = DefaultEvaluateEvery
	}
	return periodic.Run(ctx, every, &e.waker, func(ctx context.Context) {
		o, err := e.Evaluate(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			e.log().Error("alerts: evaluate", "error", err)
		case o.Fired+o.Resolved+o.Repeated > 0:
			e.log().Info("alerts evaluated", "firing", o.Firing, "fired", o.Fired, "resolved", o.Resolved, "repeated", o.Repeated)
		}
	})
}

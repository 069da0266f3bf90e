package notify

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/meshpki/meshpki/internal/store"
)

// Message is one notification: alerts that changed state, all firing or
// all resolved. It is what the outbox keeps, and each channel kind renders
// it its own way when it is delivered.
type Message struct {
	Status string      `json:"status"` // firing or resolved
	Alerts []AlertView `json:"alerts"`
	// Test marks the message of 'meshpki alert test'.
	Test bool `json:"test,omitempty"`
	// Key identifies the notification across every attempt to send it
	// (the Deliverer sets it): the Idempotency-Key header of HTTP
	// deliveries and the Message-ID of mail, so that a receiver can drop
	// a repeat. Not stored in the payload.
	Key string `json:"-"`
}

// AlertView is an alert as a notification shows it.
type AlertView struct {
	Key         string            `json:"key"`
	Status      string            `json:"status"`
	Rule        string            `json:"rule"`
	Check       string            `json:"check"`
	Severity    string            `json:"severity"`
	Threshold   string            `json:"threshold,omitempty"`
	Summary     string            `json:"summary"`
	Certificate string            `json:"certificate"`
	Labels      map[string]string `json:"labels"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      time.Time         `json:"ends_at,omitzero"`
}

// alertName is the Alertmanager alertname of a check: "expires_soon" is
// "CertificateExpiresSoon".
func alertName(check string) string {
	var b strings.Builder
	b.WriteString("Certificate")
	up := true
	for _, r := range check {
		if r == '_' {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// amAlert and amMessage are Alertmanager's webhook body, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

// labels are an alert's Alertmanager labels.
func (a AlertView) labels() map[string]string {
	l := map[string]string{"alertname": alertName(a.Check), "check": a.Check, "severity": a.Severity, "certificate": a.Certificate, "rule": a.Rule}
	if a.Threshold != "" {
		l["threshold"] = a.Threshold
	}
	for k, v := range a.Labels {
		if _, taken := l[k]; !taken {
			l[k] = v
		}
	}
	return l
}

// alertmanager renders m as Alertmanager's webhook body for channel.
func (m Message) alertmanager(channel, externalURL string) amMessage {
	out := amMessage{Version: "4", Status: m.Status, Receiver: channel, ExternalURL: externalURL,
		GroupLabels: map[string]string{"channel": channel}, GroupKey: fmt.Sprintf("{}:{channel=%q}", channel)}
	var annotations []map[string]string
	var labels []map[string]string
	for _, a := range m.Alerts {
		am := amAlert{Status: a.Status, Labels: a.labels(), StartsAt: a.StartsAt.UTC(), EndsAt: a.EndsAt.UTC(), Fingerprint: a.Key,
			Annotations: map[string]string{"summary": a.Summary}}
		if a.EndsAt.IsZero() {
			am.EndsAt = time.Time{}
		}
		if fp, ok := strings.CutPrefix(a.Certificate, "scanned:"); ok && externalURL != "" {
			am.GeneratorURL = externalURL + "/v1/inventory/" + fp
		}
		out.Alerts = append(out.Alerts, am)
		labels = append(labels, am.Labels)
		annotations = append(annotations, am.Annotations)
	}
	out.CommonLabels = common(labels)
	out.CommonAnnotations = common(annotations)
	return out
}

// common is the pairs every map has.
func common(ms []map[string]string) map[string]string {
	out := map[string]string{}
	if len(ms) == 0 {
		return out
	}
	for k, v := range ms[0] {
		all := true
		for _, m := range ms[1:] {
			if m[k] != v {
				all = false
				break
			}
		}
		if all {
			out[k] = v
		}
	}
	return out
}

// Title is a one-line summary of m: "[FIRING] 2 certificate alerts".
func (m Message) Title() string {
	prefix := "[" + strings.ToUpper(m.Status) + "]"
	if m.Test {
		return prefix + " meshpki test alert"
	}
	if len(m.Alerts) == 1 {
		return prefix + " " + m.Alerts[0].Summary
	}
	return fmt.Sprintf("%s %d certificate alerts", prefix, len(m.Alerts))
}

// Text is m as plain text: the title, then a line per alert, worst first.
func (m Message) Text() string {
	var b strings.Builder
	b.WriteString(m.Title())
	b.WriteString("\n")
	alerts := append([]AlertView(nil), m.Alerts...)
	rank := map[string]int{"critical": 0, "error": 1, "warning": 2, "info": 3}
	sort.SliceStable(alerts, func(i, j int) bool { return rank[alerts[i].Severity] < rank[alerts[j].Severity] })
	for _, a := range alerts {
		fmt.Fprintf(&b, "- %s %s: %s (%s, rule %s)\n", a.Severity, a.Check, a.Summary, a.Certificate, a.Rule)
	}
	return b.String()
}

// slack is m as a Slack-compatible incoming webhook body.
func (m Message) slack() map[string]string {
	return map[string]string{"text": m.Text()}
}

// viewOf is the AlertView of a stored alert.
func viewOf(a store.Alert, labels map[string]string) AlertView {
	v := AlertView{Key: a.Key, Status: a.State, Rule: a.Rule, Check: a.Check, Severity: a.Severity, Threshold: a.Threshold,
		Summary: a.Summary, Certificate: a.Certificate, Labels: labels, StartsAt: a.FiredAt}
	if a.State == store.AlertResolved {
		v.EndsAt = a.ResolvedAt
	}
	return v
}

package notify

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are alerting's Prometheus metrics.
type Metrics struct {
	firing        prometheus.Gauge
	evaluations   prometheus.Counter
	changes       *prometheus.CounterVec
	notifications *prometheus.CounterVec
	failures      *prometheus.CounterVec
}

// NewMetrics registers alerting's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		firing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshpki_alerts_firing",
			Help: "Alerts firing after the last evaluation."}),
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshpki_alert_evaluations_total",
			Help: "Alert evaluations run by this replica."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_alert_changes_total",
			Help: "Alerts that changed state, by change: fired, repeated, resolved, superseded."}, []string{"change"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_alert_notifications_total",
			Help: "Delivery attempts of alert notifications, by channel kind and result (delivered, retry, failed)."}, []string{"kind", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_alert_delivery_failures_total",
			Help: "Failed delivery attempts of alert notifications, by channel kind."}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.firing, m.evaluations, m.changes, m.notifications, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, change := range []string{"fired", "repeated", "resolved", "superseded"} {
		m.changes.WithLabelValues(change)
	}
	for _, kind := range Kinds {
		m.failures.WithLabelValues(kind)
		for _, result := range []string{"delivered", "retry", "failed"} {
			m.notifications.WithLabelValues(kind, result)
		}
	}
	return m, nil
}

func (m *Metrics) evaluated(o Outcome) {
	m.evaluations.Inc()
	m.firing.Set(float64(o.Firing))
	m.changes.WithLabelValues("fired").Add(float64(o.Fired))
	m.changes.WithLabelValues("repeated").Add(float64(o.Repeated))
	m.changes.WithLabelValues("resolved").Add(float64(o.Resolved))
	m.changes.WithLabelValues("superseded").Add(float64(o.Superseded))
}

func (m *Metrics) attempt(kind, result string) {
	if m == nil {
		return
	}
	m.notifications.WithLabelValues(kind, result).Inc()
	if result != "delivered" {
		m.failures.WithLabelValues(kind).Inc()
	}
}

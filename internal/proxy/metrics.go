package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a proxy's Prometheus metrics; a nil *Metrics records nothing.
type Metrics struct {
	conns    *prometheus.CounterVec
	active   *prometheus.GaugeVec
	failures *prometheus.CounterVec
	denials  *prometheus.CounterVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers a proxy's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	d := []string{"direction"}
	m := &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_proxy_connections_total",
			Help: "Connections accepted, by direction."}, d),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshpki_proxy_connections_open",
			Help: "Connections open, by direction."}, d),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_proxy_failures_total",
			Help: "Connections that failed, by direction and reason (untrusted, expired, not_allowed, no_certificate, bad_certificate, timeout, handshake, no_identity, backend)."}, []string{"direction", "reason"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_proxy_authorization_denials_total",
			Help: "Verified peers refused by the allow list, by direction."}, d),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_proxy_received_bytes_total",
			Help: "Bytes received from the accepting side, by direction."}, d),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_proxy_sent_bytes_total",
			Help: "Bytes sent back to the accepting side, by direction."}, d),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshpki_proxy_connection_duration_seconds",
			Help:    "How long connections lasted, by direction and result (ok, refused, error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12)}, []string{"direction", "result"}),
	}
	for _, c := range []prometheus.Collector{m.conns, m.active, m.failures, m.denials, m.bytesIn, m.bytesOut, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) opened(d Direction) {
	if m != nil {
		m.conns.WithLabelValues(string(d)).Inc()
		m.active.WithLabelValues(string(d)).Inc()
	}
}

func (m *Metrics) closed(d Direction) {
	if m != nil {
		m.active.WithLabelValues(string(d)).Dec()
	}
}

func (m *Metrics) failed(d Direction, reason string) {
	if m != nil {
		m.failures.WithLabelValues(string(d), reason).Inc()
	}
}

func (m *Metrics) denied(d Direction) {
	if m != nil {
		m.denials.WithLabelValues(string(d)).Inc()
	}
}

func (m *Metrics) bytes(d Direction, in, out int64) {
	if m != nil {
		m.bytesIn.WithLabelValues(string(d)).Add(float64(in))
		m.bytesOut.WithLabelValues(string(d)).Add(float64(out))
	}
}

func (m *Metrics) observe(d Direction, result string, took time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(string(d), result).Observe(took.Seconds())
	}
}

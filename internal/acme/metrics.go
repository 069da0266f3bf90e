package acme

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ACME server's Prometheus metrics.
type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	orders      *prometheus.CounterVec
	accounts    prometheus.Counter
	validations *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_acme_requests_total",
			Help: "ACME requests by route, HTTP status and problem type (empty when none).",
		}, []string{"route", "status", "problem"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshpki_acme_request_duration_seconds",
			Help:    "ACME request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_acme_orders_total",
			Help: "ACME orders created, and finalized as valid or invalid.",
		}, []string{"event"}),
		accounts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshpki_acme_accounts_created_total",
			Help: "ACME accounts created.",
		}),
		validations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshpki_acme_validations_seconds",
			Help:    "Challenge validations by type and result (valid, or the problem type).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.orders, m.accounts, m.validations} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, status int, problem string, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status), problem).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) observeValidation(typ string, prob *Problem, d time.Duration) {
	result := "valid"
	if prob != nil {
		result = prob.ShortType()
	}
	m.validations.WithLabelValues(typ, result).Observe(d.Seconds())
}

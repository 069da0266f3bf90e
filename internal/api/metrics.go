package api

import (
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/buildinfo"
	"github.com/meshpki/meshpki/internal/certlint"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the API's Prometheus metrics.
type Metrics struct {
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	issued    *prometheus.CounterVec
	revoked   prometheus.Counter
	tokens    prometheus.Counter
	batchSize prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_http_errors_total", Help: "Refused or failed HTTP requests by route and error code (bad_csr, unauthorized, forbidden, ...).",
		}, []string{"route", "error"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshpki_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_certificates_issued_total", Help: "Certificates issued, by how (sign, renew).",
		}, []string{"via"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshpki_certificates_revoked_total", Help: "Certificates revoked.",
		}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshpki_tokens_created_total", Help: "One-time tokens minted.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshpki_store_commit_batch_size", Help: "Issuances written per durable store commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	lintCount := func(verdict string, pick func(full, reused, refused uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "meshpki_lint_checks_total", Help: "Leaves checked by lint before sign: linted in full, passed on the verdict of an earlier leaf of the same shape, or refused.",
			ConstLabels: prometheus.Labels{"verdict": verdict},
		}, func() float64 { return float64(pick(certlint.Default().Counts())) })
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.latency, m.issued, m.revoked, m.tokens, m.batchSize,
		lintCount("full", func(f, _, _ uint64) uint64 { return f }),
		lintCount("shape", func(_, r, _ uint64) uint64 { return r }),
		lintCount("refused", func(_, _, x uint64) uint64 { return x }),
		buildinfo.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Zero before the first issuance, so that rate() has a series to read.
	m.issued.WithLabelValues("sign")
	m.issued.WithLabelValues("renew")
	return m, nil
}

func (m *Metrics) observe(route string, status int, errorCode string, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if errorCode != "" {
		m.errors.WithLabelValues(route, errorCode).Inc()
	}
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// ObserveBatch records the size of one store commit batch.
func (m *Metrics) ObserveBatch(size int) { m.batchSize.Observe(float64(size)) }

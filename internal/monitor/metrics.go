package monitor

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshpki/meshpki/internal/store"
)

// Defaults of the inventory's metrics.
const (
	// DefaultExportedCertificates bounds the x509_cert_* series: the
	// certificates in service that expire soonest.
	DefaultExportedCertificates = 1000
	// metricsTTL is how long one read of the inventory answers scrapes.
	metricsTTL = 15 * time.Second
)

// Metrics are the inventory's and the scanner's Prometheus metrics. The
// per-certificate series follow x509-certificate-exporter's names
// (x509_cert_not_after, x509_cert_not_before, x509_cert_expired, with
// subject_CN, issuer_CN and serial_number labels), which dashboards and
// alert rules already use, for the Limit certificates in service that
// expire soonest: bounded however large the inventory grows.
type Metrics struct {
	inv   *Inventory
	limit int
	now   func() time.Time

	mu      sync.Mutex
	readAt  time.Time
	items   []store.InventoryItem
	readErr bool

	notAfter, notBefore, expired, exported, readErrors *prometheus.Desc

	scans    *prometheus.CounterVec
	targets  *prometheus.CounterVec
	findings *prometheus.CounterVec
}

// NewMetrics registers the inventory's metrics with reg; limit bounds the
// certificates exported (0: DefaultExportedCertificates).
func NewMetrics(reg prometheus.Registerer, inv *Inventory, limit int, now func() time.Time) (*Metrics, error) {
	if limit <= 0 {
		limit = DefaultExportedCertificates
	}
	if now == nil {
		now = time.Now
	}
	labels := []string{"source", "subject_CN", "issuer_CN", "serial_number"}
	m := &Metrics{inv: inv, limit: limit, now: now,
		notAfter:   prometheus.NewDesc("x509_cert_not_after", "The certificate's notAfter, in seconds since the epoch (certificates in service that expire soonest).", labels, nil),
		notBefore:  prometheus.NewDesc("x509_cert_not_before", "The certificate's notBefore, in seconds since the epoch.", labels, nil),
		expired:    prometheus.NewDesc("x509_cert_expired", "1 when the certificate has expired.", labels, nil),
		exported:   prometheus.NewDesc("meshpki_inventory_exported_certificates", "Certificates exported as x509_cert_* series (at most the limit).", nil, nil),
		readErrors: prometheus.NewDesc("meshpki_inventory_read_error", "1 when the last read of the inventory for metrics failed.", nil, nil),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_scans_total",
			Help: "Scan runs recorded in the inventory, by trigger (schedule, report) and result (ok, error)."}, []string{"trigger", "result"}),
		targets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_scan_targets_total",
			Help: "Targets scanned, by result: ok (a chain was read), error, or silent (nothing there)."}, []string{"result"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshpki_scan_findings_total",
			Help: "Findings of scanned chains, by check and severity."}, []string{"check", "severity"}),
	}
	for _, c := range []prometheus.Collector{m, m.scans, m.targets, m.findings} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, trigger := range []string{"schedule", "report"} {
		for _, result := range []string{"ok", "error"} {
			m.scans.WithLabelValues(trigger, result)
		}
	}
	for _, result := range []string{"ok", "error", "silent"} {
		m.targets.WithLabelValues(result)
	}
	return m, nil
}

// Scanned counts a recorded run.
func (m *Metrics) Scanned(trigger string, results []Result, err error) {
	if m == nil {
		return
	}
	result := "ok"
	for _, r := range results {
		switch {
		case r.Silent:
			m.targets.WithLabelValues("silent").Inc()
		case r.Error != "":
			m.targets.WithLabelValues("error").Inc()
			result = "error"
		default:
			m.targets.WithLabelValues("ok").Inc()
		}
		for _, f := range r.Findings {
			m.findings.WithLabelValues(f.Check, f.Severity.String()).Inc()
		}
	}
	if err != nil {
		result = "error"
	}
	m.scans.WithLabelValues(trigger, result).Inc()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.notAfter, m.notBefore, m.expired, m.exported, m.readErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the soonest-expiring
// certificates in service, read at most every 15 seconds.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	items, failed := m.read()
	now := m.now()
	seen := map[[4]string]bool{}
	n := 0
	for _, it := range items {
		labels := [4]string{string(it.Source), subjectCN(it), issuerCN(it), string(it.Serial)}
		if seen[labels] {
			continue // the same certificate under two sources' names cannot be two series
		}
		seen[labels] = true
		n++
		expired := 0.0
		if !now.Before(it.NotAfter) {
			expired = 1
		}
		ch <- prometheus.MustNewConstMetric(m.notAfter, prometheus.GaugeValue, float64(it.NotAfter.Unix()), labels[:]...)
		ch <- prometheus.MustNewConstMetric(m.notBefore, prometheus.GaugeValue, float64(it.NotBefore.Unix()), labels[:]...)
		ch <- prometheus.MustNewConstMetric(m.expired, prometheus.GaugeValue, expired, labels[:]...)
	}
	ch <- prometheus.MustNewConstMetric(m.exported, prometheus.GaugeValue, float64(n))
	readErr := 0.0
	if failed {
		readErr = 1
	}
	ch <- prometheus.MustNewConstMetric(m.readErrors, prometheus.GaugeValue, readErr)
}

func (m *Metrics) read() ([]store.InventoryItem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := m.now(); now.Sub(m.readAt) >= metricsTTL || now.Before(m.readAt) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		page, err := m.inv.Store.ListInventory(ctx, store.InventoryFilter{Active: true, Limit: m.limit})
		m.readAt, m.readErr = now, err != nil
		if err == nil {
			m.items = page.Items
		}
	}
	return m.items, m.readErr
}

func subjectCN(it store.InventoryItem) string {
	if it.Source == store.SourceIssued {
		return it.Subject
	}
	return CommonName(it.Subject)
}

func issuerCN(it store.InventoryItem) string {
	if it.Source == store.SourceIssued {
		return it.Issuer
	}
	return CommonName(it.Issuer)
}

package api

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// Limits of POST /v1/inventory/reports: a report of a /20 with chains of
// three fits.
const (
	maxReportBytes   = 64 << 20
	maxReportResults = 1 << 16
	maxReportChain   = 16
	maxTargetLength  = 1024
)

// parseExpiringBefore reads expiring_before: an RFC 3339 time or a
// duration from now ("72h", "14d").
func parseExpiringBefore(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := duration.Parse(v); err == nil && d >= 0 {
		return now.Add(d), nil
	}
	return time.Time{}, newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("expiring_before %q must be an RFC 3339 time or a duration such as \"72h\" or \"3d\"", ca.Clip(v)))
}

// parseLimit reads a page size from 1 to 1000 ("" is 0: the default).
func parseLimit(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, newError(http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 1000")
	}
	return n, nil
}

func (s *Server) handleListInventory(w http.ResponseWriter, r *http.Request, _ caller) error {
	q := r.URL.Query()
	now := s.now()
	f := store.InventoryFilter{Name: q.Get("name"), After: q.Get("after")}
	switch src := q.Get("source"); src {
	case "", string(store.SourceIssued), string(store.SourceScanned):
		f.Source = store.InventorySource(src)
	default:
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("source %q must be issued or scanned", ca.Clip(src)))
	}
	switch a := q.Get("active"); a {
	case "", "false":
	case "true":
		f.Active = true
	default:
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("active %q must be true or false", ca.Clip(a)))
	}
	var err error
	if f.ExpiringBefore, err = parseExpiringBefore(q.Get("expiring_before"), now); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	items, next, err := s.inventory.List(r.Context(), f)
	if errors.Is(err, store.ErrBadCursor) {
		return newError(http.StatusBadRequest, "bad_request", "after is not a cursor this server handed out")
	}
	if err != nil {
		return err
	}
	out := wire.InventoryPage{Items: make([]wire.InventoryItem, 0, len(items)), Next: next}
	for _, it := range items {
		out.Items = append(out.Items, inventoryBody(it, now, false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseFingerprint reads a SHA-256 fingerprint as hex, in either case,
// with or without colons.
func parseFingerprint(v string) (string, error) {
	fp := strings.ToLower(strings.ReplaceAll(v, ":", ""))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
		return "", newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", ca.Clip(v)))
	}
	return fp, nil
}

func (s *Server) handleGetInventory(w http.ResponseWriter, r *http.Request, _ caller) error {
	fp, err := parseFingerprint(r.PathValue("fingerprint"))
	if err != nil {
		return err
	}
	it, err := s.inventory.GetScanned(r.Context(), fp)
	if isNotFound(err) {
		return newError(http.StatusNotFound, "not_found", fmt.Sprintf("no scanned certificate with fingerprint %s", fp))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inventoryBody(it, s.now(), true))
	return nil
}

func inventoryBody(it monitor.Item, now time.Time, detail bool) wire.InventoryItem {
	out := wire.InventoryItem{
		Source: string(it.Source), Fingerprint: it.Fingerprint, Serial: it.Serial, Subject: it.Subject,
		Issuer: it.Issuer, Provisioner: it.Provisioner, Names: it.Names, NotBefore: it.NotBefore, NotAfter: it.NotAfter,
		Active: it.Active, Replaced: it.Replaced, IssuedSerial: it.IssuedSerial, Labels: it.Labels, FirstSeen: it.FirstSeen, LastSeen: it.LastSeen,
		Findings: findingsBody(it.Findings),
	}
	if out.Names == nil {
		out.Names = []string{}
	}
	if it.Source == store.SourceIssued {
		out.Status = string(it.Status)
		if it.Status == store.StatusValid && !now.Before(it.NotAfter) {
			out.Status = string(store.StatusExpired)
		}
	}
	if detail {
		var b strings.Builder
		for _, der := range it.Chain {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der}) // a strings.Builder does not fail
		}
		out.Chain = b.String()
		for _, sg := range it.Sightings {
			ws := wire.Sighting{Scope: sg.Scope, Location: sg.Location, FirstSeen: sg.FirstSeen, LastSeen: sg.LastSeen, Current: sg.Current, Findings: []wire.Finding{}}
			for _, f := range sg.Findings {
				ws.Findings = append(ws.Findings, wire.Finding(f))
			}
			out.Sightings = append(out.Sightings, ws)
		}
	}
	return out
}

func findingsBody(fs []monitor.Finding) []wire.Finding {
	out := make([]wire.Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, wire.Finding{Check: f.Check, Severity: f.Severity.String(), Message: f.Message, Certificate: f.Certificate})
	}
	return out
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, _ caller) error {
	var report wire.ScanReport
	if err := decodeJSONUpTo(w, r, &report, maxReportBytes); err != nil {
		return err
	}
	if err := monitor.CheckLabels(report.Labels); err != nil {
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	if len(report.Results) > maxReportResults {
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("a report holds at most %d results; this one has %d", maxReportResults, len(report.Results)))
	}
	results := make([]monitor.Result, 0, len(report.Results))
	for i, rr := range report.Results {
		res, err := s.reportedResult(rr)
		if err != nil {
			return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("results[%d]: %v", i, err))
		}
		results = append(results, res)
	}
	n, err := s.inventory.Record(r.Context(), s.now(), monitor.Covered(results), report.Hold.Std(), report.Labels, results)
	if err != nil {
		return err
	}
	if s.reported != nil {
		s.reported(results)
	}
	writeJSON(w, http.StatusOK, wire.ScanReportResult{Recorded: n})
	return nil
}

// reportedResult checks one reported result and runs the server's checks
// on its chain.
func (s *Server) reportedResult(rr wire.ReportedResult) (monitor.Result, error) {
	if rr.Target == "" || len(rr.Target) > maxTargetLength || len(rr.Scope) > maxTargetLength || len(rr.VerifyName) > maxTargetLength {
		return monitor.Result{}, fmt.Errorf("target, scope and verify_name must be 1 to %d bytes", maxTargetLength)
	}
	kind := monitor.Kind(rr.Kind)
	if kind != monitor.KindEndpoint && kind != monitor.KindFile {
		return monitor.Result{}, fmt.Errorf("kind %q must be endpoint or file", ca.Clip(rr.Kind))
	}
	scope := rr.Scope
	if scope == "" {
		scope = rr.Target
	}
	if rr.Error != "" || len(rr.Chain) == 0 {
		if rr.Error == "" && !rr.Silent {
			return monitor.Result{}, errors.New("a result needs a chain, an error, or silent")
		}
		return monitor.Result{Target: rr.Target, Scope: scope, Kind: kind, Error: ca.Clip(rr.Error), Silent: rr.Silent}, nil
	}
	if len(rr.Chain) > maxReportChain {
		return monitor.Result{}, fmt.Errorf("a chain of %d certificates is more than %d", len(rr.Chain), maxReportChain)
	}
	chain := make([]*x509.Certificate, 0, len(rr.Chain))
	for j, der := range rr.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return monitor.Result{}, fmt.Errorf("chain[%d] is not a certificate: %v", j, ca.Clip(err.Error()))
		}
		chain = append(chain, c)
	}
	src := monitor.Source{Endpoint: kind == monitor.KindEndpoint, VerifyName: rr.VerifyName}
	return s.inventory.Policy.Result(scope, rr.Target, kind, chain, src), nil
}

func (s *Server) handleListSchedules(w http.ResponseWriter, r *http.Request, _ caller) error {
	list, err := s.schedules.Store.ListSchedules(r.Context())
	if err != nil {
		return err
	}
	out := wire.ScanScheduleList{Schedules: make([]wire.ScanSchedule, 0, len(list))}
	for _, sc := range list {
		out.Schedules = append(out.Schedules, scheduleBody(sc))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func scheduleBody(sc store.ScanSchedule) wire.ScanSchedule {
	opts, _ := monitor.DecodeScheduleOptions(sc.Options)
	return wire.ScanSchedule{Name: sc.Name, Targets: sc.Targets, Every: policy.Duration(sc.Every),
		SNI: opts.SNI, StartTLS: opts.StartTLS, Timeout: opts.Timeout, AllowLarge: opts.AllowLarge, Labels: opts.Labels,
		NextRun: sc.NextRun, LastRun: sc.LastRun, LastError: sc.LastError, CreatedAt: sc.CreatedAt}
}

func (s *Server) handleAddSchedule(w http.ResponseWriter, r *http.Request, c caller) error {
	var body wire.ScanSchedule
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	sc, err := s.schedules.Add(r.Context(), c.actor(),
		store.ScanSchedule{Name: body.Name, Targets: body.Targets, Every: body.Every.Std()},
		monitor.ScheduleOptions{SNI: body.SNI, StartTLS: body.StartTLS, Timeout: body.Timeout, AllowLarge: body.AllowLarge, Labels: body.Labels})
	if err != nil {
		return err
	}
	if s.schedulesChanged != nil {
		s.schedulesChanged()
	}
	writeJSON(w, http.StatusCreated, scheduleBody(sc))
	return nil
}

func (s *Server) handleRunSchedule(w http.ResponseWriter, r *http.Request, _ caller) error {
	name := r.PathValue("name")
	if err := s.schedules.RunNow(r.Context(), name); err != nil {
		return err
	}
	if s.schedulesChanged != nil {
		s.schedulesChanged()
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"started": name})
	return nil
}

func (s *Server) handleRemoveSchedule(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.schedules.Remove(r.Context(), c.actor(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

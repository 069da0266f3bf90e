package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshpki/meshpki/internal/acme"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/notify"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/registration"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

// MaxBodyBytes caps every request body.
const MaxBodyBytes = 1 << 20

// Store is what the API reads directly: listings, single records and
// readiness. Every change goes through a service (ca, provisioner,
// registration, revocation), which writes it with its audit record.
type Store interface {
	store.CertificateReader
	store.ProvisionerReader
	GetEntry(ctx context.Context, id string) (store.Entry, error)
	ListEntries(ctx context.Context, f store.EntryFilter) ([]store.Entry, error)
	audit.Reader
	Ping(ctx context.Context) error
}

// Config is what the API needs.
type Config struct {
	// Authority is the issuance path every endpoint calls.
	Authority *ca.Authority
	// Store answers listings and readiness.
	Store Store
	// Revocation revokes certificates (POST /v1/revoke).
	Revocation *revocation.Service
	// Provisioners changes provisioners and mints tokens.
	Provisioners *provisioner.Service
	// Registration changes SPIFFE entries and nodes and mints join tokens.
	Registration *registration.Service
	// Operators says which role an admin credential holds, and adds and
	// retires operators (/v1/admins).
	Operators *operator.Service
	// ACME, if set, serves /acme/ and the EAB key endpoints.
	ACME *acme.Server
	// Inventory, if set, serves /v1/inventory; Reported, if set, is told of
	// every scan report recorded.
	Inventory *monitor.Inventory
	Reported  func([]monitor.Result)
	// Schedules, if set, serves /v1/scan/schedules; SchedulesChanged, if
	// set, is called after one is added, so that it runs at once.
	Schedules        *monitor.Schedules
	SchedulesChanged func()
	// OCSP, if set, serves /ocsp (RFC 6960).
	OCSP http.Handler
	// CRLs, if set, serves /crl… and /intermediates/NAME/GEN.der.
	CRLs *revocation.CRLPublisher
	// UILogins, if set, mints one-time dashboard sign-ins
	// (POST /v1/ui/logins).
	UILogins UILoginMinter
	// Alerts, if set, serves /v1/alerts; AlertsChanged, if set, is called
	// after a channel or rule changes, so that alerts are evaluated at once.
	Alerts        *notify.Service
	AlertsChanged func()
	// EntriesChanged, if set, is called after a registration entry changes
	// through this API, so that agents hear of it at once.
	EntriesChanged func()
	// NodeEvicted, if set, is called after a node is evicted through this
	// API, so that its open sync stream ends at once.
	NodeEvicted func(spiffeID string)
	// Registry receives the API's metrics (default: a new registry).
	Registry *prometheus.Registry
	// Logger receives request failures (default slog.Default()).
	Logger *slog.Logger
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// Server is the JSON API as an http.Handler. Safe for concurrent use.
type Server struct {
	ca               *ca.Authority
	st               Store
	revocation       *revocation.Service
	provisioners     *provisioner.Service
	registration     *registration.Service
	operators        *operator.Service
	log              *slog.Logger
	now              func() time.Time
	acme             *acme.Server
	entriesChanged   func()
	nodeEvicted      func(string)
	inventory        *monitor.Inventory
	schedules        *monitor.Schedules
	schedulesChanged func()
	alerts           *notify.Service
	alertsChanged    func()
	reported         func([]monitor.Result)
	ocsp             http.Handler
	crls             *revocation.CRLPublisher
	uiLogins         UILoginMinter
	mux              *http.ServeMux
	metrics          *Metrics
	registry         *prometheus.Registry
}

// New builds the API handler and registers its metrics.
func New(cfg Config) (*Server, error) {
	if cfg.Authority == nil || cfg.Store == nil || cfg.Revocation == nil || cfg.Provisioners == nil || cfg.Registration == nil || cfg.Operators == nil {
		return nil, errors.New("api: Config needs Authority, Store, Revocation, Provisioners, Registration and Operators")
	}
	s := &Server{ca: cfg.Authority, st: cfg.Store, revocation: cfg.Revocation, provisioners: cfg.Provisioners, registration: cfg.Registration, operators: cfg.Operators, acme: cfg.ACME, entriesChanged: cfg.EntriesChanged, nodeEvicted: cfg.NodeEvicted, inventory: cfg.Inventory, schedules: cfg.Schedules, schedulesChanged: cfg.SchedulesChanged, alerts: cfg.Alerts, alertsChanged: cfg.AlertsChanged, reported: cfg.Reported, ocsp: cfg.OCSP, crls: cfg.CRLs, uiLogins: cfg.UILogins, log: cfg.Logger, now: cfg.Clock, registry: cfg.Registry}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	m, err := newMetrics(s.registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.routes()
	return s, nil
}

// Metrics returns the API's metrics, so the server can feed batch sizes.
func (s *Server) Metrics() *Metrics { return s.metrics }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// endpoint is one route: the methods it answers and their handlers.
type endpoint map[string]func(http.ResponseWriter, *http.Request) error

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	handle := func(route string, e endpoint) {
		s.mux.Handle(route, s.instrument(route, e))
	}
	handle("/roots.pem", endpoint{"GET": s.handleRoots})
	handle("/intermediates.pem", endpoint{"GET": s.handleIntermediates})
	handle("/healthz", endpoint{"GET": s.handleHealthz})
	handle("/readyz", endpoint{"GET": s.handleReadyz})
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	handle("/v1/sign", endpoint{"POST": s.handleSign})
	handle("/v1/renew", endpoint{"POST": s.handleRenew})
	handle("/v1/revoke", endpoint{"POST": s.handleRevoke})
	handle("/v1/revoke/matching", endpoint{"POST": s.need(operator.Administer, s.handleRevokeMatching)})
	handle("/v1/certificates", endpoint{"GET": s.need(operator.Read, s.handleListCertificates)})
	handle("/v1/certificates/{serial}", endpoint{"GET": s.need(operator.Read, s.handleGetCertificate)})
	handle("/v1/tokens", endpoint{"POST": s.need(operator.Issue, s.handleCreateToken)})
	handle("/v1/provisioners", endpoint{"GET": s.need(operator.Read, s.handleListProvisioners), "POST": s.need(operator.Administer, s.handleAddProvisioner)})
	handle("/v1/provisioners/{name}", endpoint{
		"GET":    s.need(operator.Read, s.handleGetProvisioner),
		"PUT":    s.need(operator.Administer, s.handleUpdateProvisioner),
		"DELETE": s.need(operator.Administer, s.handleRemoveProvisioner),
	})
	handle("/v1/policy/check", endpoint{"POST": s.need(operator.Read, s.handleCheckPolicy)})
	handle("/v1/entries", endpoint{"GET": s.need(operator.Read, s.handleListEntries), "POST": s.need(operator.Issue, s.handleCreateEntry)})
	handle("/v1/entries/{id}", endpoint{
		"GET":    s.need(operator.Read, s.handleGetEntry),
		"PUT":    s.need(operator.Issue, s.handleUpdateEntry),
		"DELETE": s.need(operator.Issue, s.handleDeleteEntry),
	})
	handle("/v1/nodes", endpoint{"GET": s.need(operator.Read, s.handleListNodes)})
	handle("/v1/admins", endpoint{"GET": s.need(operator.Audit, s.handleListOperators), "POST": s.need(operator.Administer, s.handleAddOperator)})
	handle("/v1/admins/{name}", endpoint{"DELETE": s.need(operator.Administer, s.handleRetireOperator)})
	handle("/v1/admins/{name}/credential", endpoint{"POST": s.need(operator.Administer, s.handleOperatorCredential)})
	handle("/v1/audit", endpoint{"GET": s.need(operator.Audit, s.handleListAudit)})
	handle("/v1/nodes/evict", endpoint{"POST": s.need(operator.Administer, s.handleEvictNode)})
	if s.inventory != nil {
		handle("/v1/inventory", endpoint{"GET": s.need(operator.Read, s.handleListInventory)})
		handle("/v1/inventory/{fingerprint}", endpoint{"GET": s.need(operator.Read, s.handleGetInventory)})
		handle("/v1/inventory/reports", endpoint{"POST": s.need(operator.Issue, s.handleReport)})
	}
	if s.schedules != nil {
		handle("/v1/scan/schedules", endpoint{"GET": s.need(operator.Read, s.handleListSchedules), "POST": s.need(operator.Administer, s.handleAddSchedule)})
		handle("/v1/scan/schedules/{name}", endpoint{"DELETE": s.need(operator.Administer, s.handleRemoveSchedule)})
		handle("/v1/scan/schedules/{name}/run", endpoint{"POST": s.need(operator.Issue, s.handleRunSchedule)})
	}
	if s.ocsp != nil {
		// OCSP answers in its own format (RFC 6960), errors included.
		s.mux.Handle("/ocsp", s.ocsp)
		s.mux.Handle("/ocsp/", s.ocsp)
	}
	s.handleCRLs(handle)
	if s.uiLogins != nil {
		handle("/v1/ui/logins", endpoint{"POST": s.need(operator.Administer, s.handleCreateUILogin)})
	}
	if s.alerts != nil {
		handle("/v1/alerts", endpoint{"GET": s.need(operator.Read, s.handleListAlerts)})
		handle("/v1/alerts/notifications", endpoint{"GET": s.need(operator.Read, s.handleListNotifications)})
		handle("/v1/alerts/channels", endpoint{"GET": s.need(operator.Read, s.handleListChannels), "POST": s.need(operator.Administer, s.handleAddChannel)})
		handle("/v1/alerts/channels/{name}", endpoint{"DELETE": s.need(operator.Administer, s.handleRemoveChannel)})
		handle("/v1/alerts/channels/{name}/test", endpoint{"POST": s.need(operator.Administer, s.handleTestChannel)})
		handle("/v1/alerts/rules", endpoint{"GET": s.need(operator.Read, s.handleListRules), "POST": s.need(operator.Administer, s.handleAddRule)})
		handle("/v1/alerts/rules/{name}", endpoint{"DELETE": s.need(operator.Administer, s.handleRemoveRule)})
	}
	if s.acme != nil {
		// ACME answers in its own error format (RFC 7807) and counts its
		// own metrics.
		s.mux.Handle("/acme/", s.acme)
		handle("/v1/acme/eab", endpoint{"GET": s.need(operator.Read, s.handleListEAB), "POST": s.need(operator.Issue, s.handleCreateEAB)})
	}
	handle("/", endpoint{"*": func(w http.ResponseWriter, r *http.Request) error {
		return newError(http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s", ca.Clip(r.URL.Path)))
	}})
}

// PublicHandler serves what is public and signed, for a plain-HTTP
// listener: /roots.pem, /intermediates.pem, /ocsp, /crl… and the
// intermediates' certificates AIA points to. Everything else is
// 404: no credential, token or private data crosses plain HTTP.
func (s *Server) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(route string, e endpoint) { mux.Handle(route, s.instrument(route, e)) }
	handle("/roots.pem", endpoint{"GET": s.handleRoots})
	handle("/intermediates.pem", endpoint{"GET": s.handleIntermediates})
	if s.ocsp != nil {
		mux.Handle("/ocsp", s.ocsp)
		mux.Handle("/ocsp/", s.ocsp)
	}
	s.handleCRLs(handle)
	handle("/", endpoint{"*": func(w http.ResponseWriter, r *http.Request) error {
		return newError(http.StatusNotFound, "not_found", fmt.Sprintf("%s is not served over plain HTTP", ca.Clip(r.URL.Path)))
	}})
	return mux
}

// instrument dispatches by method, turns returned errors into JSON error
// responses, and counts every request by route, status and error code.
func (s *Server) instrument(route string, e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h, ok := e[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = e["GET"]
		}
		if !ok {
			h, ok = e["*"]
		}
		var err error
		if !ok {
			allowed := make([]string, 0, len(e))
			for m := range e {
				allowed = append(allowed, m)
			}
			rec.Header().Set("Allow", strings.Join(allowed, ", "))
			err = newError(http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", ca.Clip(r.Method), ca.Clip(r.URL.Path)))
		} else {
			err = h(rec, r)
		}
		if err != nil {
			s.writeError(rec, r, err)
			s.auditRefusal(r, route, err)
		}
		s.metrics.observe(route, rec.status, rec.errorCode, time.Since(start))
	})
}

// auditedRoutes are the routes whose refusals by the API layer itself (bad
// JSON, oversized body, missing credential) are audited; refusals decided by
// the Authority are audited there.
var auditedRoutes = map[string]bool{"/v1/sign": true, "/v1/renew": true, "/v1/revoke": true, "/v1/revoke/matching": true, "/v1/tokens": true}

func (s *Server) auditRefusal(r *http.Request, route string, err error) {
	var ae *apiError
	if !auditedRoutes[route] || !errors.As(err, &ae) || ae.status >= 500 {
		return
	}
	actor := "anonymous"
	if cert := clientCert(r); cert != nil {
		actor = "cert:" + string(store.SerialOf(cert.SerialNumber))
	}
	s.ca.RecordDenied(r.Context(), actor, route, ae.msg, map[string]string{"code": ae.code, "remote": r.RemoteAddr})
}

type statusRecorder struct {
	http.ResponseWriter
	status    int
	errorCode string
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// decodeJSON reads one JSON object into v: at most MaxBodyBytes, no unknown
// fields, nothing after it.
//
// Field names must match exactly (encoding/json alone would take "CSR" for
// "csr") and appear once: a body that one parser reads one way and another
// differently is refused (checkStrict).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONUpTo(w, r, v, MaxBodyBytes)
}

// decodeJSONUpTo is decodeJSON for a body of up to limit bytes.
func decodeJSONUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json; the request has no Content-Type")
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return newError(http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("the body must be application/json, not %q", ca.Clip(ct)))
	}
	if r.ContentLength > limit {
		return newError(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, limit))
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return jsonError(err)
	}
	if err := checkStrict(data, reflect.TypeOf(v)); err != nil && !errors.Is(err, errSyntax) {
		return newError(http.StatusBadRequest, "bad_request", ca.Clip(err.Error()))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, "bad_request", "the body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return newError(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over the limit of %d bytes", mbe.Limit))
	case errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, "bad_request", "the body is empty; a JSON object is required")
	case errors.As(err, &syn):
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("the body is not valid JSON (at byte %d)", syn.Offset))
	case errors.As(err, &typ):
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("field %q must be %s", ca.Clip(typ.Field), typ.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return newError(http.StatusBadRequest, "bad_request", "unknown "+ca.Clip(strings.TrimPrefix(err.Error(), "json: unknown ")))
	}
	return newError(http.StatusBadRequest, "bad_request", "the body is not a valid JSON object: "+ca.Clip(err.Error()))
}

// clientCert returns the verified TLS client certificate, if any.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// caller is who a request authenticated as.
type caller struct {
	cert  *x509.Certificate
	admin string // the admin URI, or "" for a plain holder
	// op is the operator an admin credential belongs to: its role and,
	// for the operator role, its provisioners.
	op store.Operator
}

// can reports whether the caller's role grants p.
func (c caller) can(p operator.Permission) bool {
	return c.admin != "" && operator.Allows(c.op.Role, p)
}

// actsFor reports whether the caller may act for provisioner prov: an
// admin for every one, an operator for those it was granted.
func (c caller) actsFor(prov string) bool {
	switch {
	case c.admin == "":
		return false
	case c.op.Role == store.RoleAdmin:
		return true
	case c.op.Role == store.RoleOperator:
		return slices.Contains(c.op.Provisioners, prov)
	}
	return false
}

func (c caller) actor() string {
	if c.admin != "" {
		return "admin:" + c.admin
	}
	return "cert:" + string(store.SerialOf(c.cert.SerialNumber))
}

// authenticate checks the client certificate against the store: recorded,
// unrevoked, unexpired.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	cert := clientCert(r)
	if cert == nil {
		return caller{}, newError(http.StatusUnauthorized, "unauthorized", "this endpoint needs a client certificate issued by this CA")
	}
	if chain := r.TLS.VerifiedChains[0]; !chain[len(chain)-1].Equal(s.ca.Hierarchy().Root()) {
		// A certificate from a CA trusted for operators only: an operator
		// enrolled by its identity, or nobody.
		id, op, err := s.operators.External(r.Context(), cert)
		if err != nil {
			return caller{}, err
		}
		return caller{cert: cert, admin: id, op: op}, nil
	}
	if _, err := s.ca.CheckHolder(r.Context(), cert); err != nil {
		return caller{}, err
	}
	c := caller{cert: cert}
	c.admin, _ = s.ca.IsAdmin(cert)
	if c.admin != "" {
		op, err := s.operators.Lookup(r.Context(), c.admin)
		if err != nil {
			return caller{}, err
		}
		c.op = op
	}
	return c, nil
}

type adminHandler func(w http.ResponseWriter, r *http.Request, admin caller) error

// need wraps a handler whose caller's role must grant p (docs/ROLES.md).
func (s *Server) need(p operator.Permission, h adminHandler) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authenticate(r)
		if err != nil {
			return err
		}
		if c.admin == "" {
			return newError(http.StatusForbidden, "forbidden", "this endpoint needs an operator's admin certificate")
		}
		if !c.can(p) {
			return newError(http.StatusForbidden, "forbidden", fmt.Sprintf("operator %s has role %s, which does not grant %q", c.op.Name, c.op.Role, p))
		}
		return h(w, r, c)
	}
}

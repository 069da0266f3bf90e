package acme

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

const cryptoSHA256 = crypto.SHA256

// maxBody caps an ACME request body; a finalize with an RSA-4096 CSR is
// a few KiB.
const maxBody = 64 << 10

// Defaults for Config.
const (
	DefaultOrderLifetime      = 24 * time.Hour
	DefaultValidationWait     = 2 * time.Second
	DefaultMaxValidations     = 32
	DefaultValidationAttempts = 1
)

// Store is the part of the store the ACME server uses: its own records
// (accounts, orders, authorizations, EAB keys, nonces) and reads of
// certificates. Certificates are written only by the issuance path and
// revocation.
type Store interface {
	store.ACME
	store.Tokens            // consumed nonces
	store.CertificateReader // certificates to download, revoke and renew
}

// Config is what the ACME server needs.
type Config struct {
	// Authority issues certificates and holds the provisioners.
	Authority *ca.Authority
	// Store keeps accounts, orders and consumed nonces.
	Store Store
	// Revocation revokes certificates (revokeCert).
	Revocation *revocation.Service
	// BaseURL is the server's public URL, e.g. https://ca.example:8443; the
	// directory of provisioner P is BaseURL/acme/P/directory, and every JWS
	// url must start with it.
	BaseURL string
	// Secret keys the nonces and seals EAB keys at rest. Replicas sharing a
	// store must share it. At least 32 bytes.
	Secret keys.MAC
	// Validation says where challenges are checked: the http-01 and
	// tls-alpn-01 ports (default 80 and 443), the DNS resolver, the timeout.
	Validation validation.Config
	// MaxValidations bounds how many challenge validations run at once
	// (default 32); more wait in line.
	MaxValidations int
	// ValidationWait is how long a challenge POST waits for its validation
	// to finish, so that the response already says valid or invalid
	// (default 2s; negative answers "processing" at once). A validation
	// that takes longer goes on, and the client polls.
	ValidationWait time.Duration
	// OrderLifetime is how long a new order and its authorizations stay
	// usable (default 24h).
	OrderLifetime time.Duration
	// Registry receives the ACME metrics (nil: not registered).
	Registry prometheus.Registerer
	// Logger, Clock: defaults slog.Default() and time.Now.
	Logger *slog.Logger
	Clock  func() time.Time
}

// Server is the ACME front door as an http.Handler serving /acme/. Run must
// be running for challenges to be validated.
type Server struct {
	ca        *ca.Authority
	st        Store
	revoker   *revocation.Service
	base      string
	nonces    *nonces
	sealer    *keys.Sealer
	validator *validation.Validator
	jobs      chan *validationJob
	workers   int
	wait      time.Duration
	orderLife time.Duration
	log       *slog.Logger
	now       func() time.Time
	mux       *http.ServeMux
	metrics   *metrics
	// recoverWaker is RecoverValidations' (tests wake it).
	recoverWaker periodic.Waker
}

// New returns an ACME server.
func New(cfg Config) (*Server, error) {
	if cfg.Authority == nil || cfg.Store == nil || cfg.Revocation == nil {
		return nil, errors.New("acme: Config needs Authority, Store and Revocation")
	}
	if s, ok := cfg.Secret.(keys.SecretMAC); cfg.Secret == nil || ok && len(s) < 32 {
		return nil, errors.New("acme: Config.Secret must be a key of at least 32 bytes")
	}
	if !strings.HasPrefix(cfg.BaseURL, "https://") && !strings.HasPrefix(cfg.BaseURL, "http://") {
		return nil, fmt.Errorf("acme: BaseURL %q is not an http(s) URL", cfg.BaseURL)
	}
	s := &Server{
		ca:        cfg.Authority,
		st:        cfg.Store,
		revoker:   cfg.Revocation,
		base:      strings.TrimRight(cfg.BaseURL, "/"),
		validator: validation.New(cfg.Validation),
		workers:   cfg.MaxValidations,
		wait:      cfg.ValidationWait,
		orderLife: cfg.OrderLifetime,
		log:       cfg.Logger,
		now:       cfg.Clock,
	}
	if s.workers <= 0 {
		s.workers = DefaultMaxValidations
	}
	if s.wait == 0 {
		s.wait = DefaultValidationWait
	}
	if s.orderLife <= 0 {
		s.orderLife = DefaultOrderLifetime
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	nonceKey, err := cfg.Secret.MAC([]byte("meshpki acme nonce v1"))
	if err != nil {
		return nil, fmt.Errorf("acme: derive the nonce key: %w", err)
	}
	s.nonces = &nonces{key: nonceKey, st: cfg.Store, now: s.now}
	sealer, err := keys.NewSealer(cfg.Secret, "meshpki acme eab seal v1")
	if err != nil {
		return nil, err
	}
	s.sealer = sealer
	s.jobs = make(chan *validationJob, 4*s.workers)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.routes()
	return s, nil
}

// derive is a subkey of secret for one purpose.

// Run validates challenges until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	done := make(chan struct{})
	for range s.workers {
		go func() {
			defer func() { done <- struct{}{} }()
			s.validateLoop(ctx)
		}()
	}
	for range s.workers {
		<-done
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handlerFunc is an ACME handler; a returned error becomes a problem
// document.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *provisioner) error

// provisioner is the ACME provisioner a request is for.
type provisioner struct {
	name       string
	requireEAB bool
	prefix     string // BaseURL/acme/NAME
}

func (p *provisioner) url(parts ...string) string {
	return p.prefix + "/" + strings.Join(parts, "/")
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	handle := func(pattern, route string, methods ...string) func(handlerFunc) {
		return func(h handlerFunc) {
			s.mux.Handle(pattern, s.instrument(route, methods, h))
		}
	}
	handle("/acme/{prov}/directory", "directory", "GET")(s.handleDirectory)
	handle("/acme/{prov}/new-nonce", "new-nonce", "GET", "HEAD")(s.handleNewNonce)
	handle("/acme/{prov}/new-account", "new-account", "POST")(s.handleNewAccount)
	handle("/acme/{prov}/account/{id}", "account", "POST")(s.handleAccount)
	handle("/acme/{prov}/account/{id}/orders", "account-orders", "POST")(s.handleAccountOrders)
	handle("/acme/{prov}/key-change", "key-change", "POST")(s.handleKeyChange)
	handle("/acme/{prov}/new-order", "new-order", "POST")(s.handleNewOrder)
	handle("/acme/{prov}/order/{id}", "order", "POST")(s.handleOrder)
	handle("/acme/{prov}/order/{id}/finalize", "finalize", "POST")(s.handleFinalize)
	handle("/acme/{prov}/authz/{id}", "authz", "POST")(s.handleAuthz)
	handle("/acme/{prov}/challenge/{authz}/{id}", "challenge", "POST")(s.handleChallenge)
	handle("/acme/{prov}/certificate/{serial}", "certificate", "POST")(s.handleCertificate)
	handle("/acme/{prov}/revoke-cert", "revoke-cert", "POST")(s.handleRevoke)
	handle("/acme/{prov}/renewal-info/{id}", "renewal-info", "GET")(s.handleRenewalInfo)
	s.mux.Handle("/acme/", s.instrument("unknown", nil, func(w http.ResponseWriter, r *http.Request, p *provisioner) error {
		return notFound("no ACME resource at %s", r.URL.Path)
	}))
}

// instrument resolves the provisioner, checks the method, adds the headers
// every ACME response carries (Replay-Nonce, Link to the directory,
// Cache-Control), writes errors as problems and counts requests.
func (s *Server) instrument(route string, methods []string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		info := &requestInfo{actor: "anonymous"}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		err := s.serve(rec, r, methods, h)
		if err != nil {
			p := asProblem(err)
			if p.Status >= 500 {
				s.log.Error("acme request failed", "route", route, "error", err)
			}
			rec.problem = p.ShortType()
			writeProblem(rec, p)
			s.auditRefusal(r, route, info.actor, err, p)
		}
		s.metrics.observe(route, rec.status, rec.problem, time.Since(start))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, methods []string, h handlerFunc) error {
	w.Header().Set("Cache-Control", "no-store")
	if nonce, err := s.nonces.mint(); err == nil {
		w.Header().Set("Replay-Nonce", nonce)
	}
	name := r.PathValue("prov")
	if name == "" {
		return notFound("no ACME resource at %s", r.URL.Path)
	}
	p := &provisioner{name: name, prefix: s.base + "/acme/" + name}
	w.Header().Add("Link", `<`+p.url("directory")+`>;rel="index"`)
	if methods != nil && !allowed(methods, r.Method) {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		return problem(http.StatusMethodNotAllowed, probMalformed, "%s is not allowed here (use %s)", r.Method, strings.Join(methods, " or "))
	}
	prov, _, err := s.ca.Provisioner(r.Context(), name)
	if err != nil {
		if ca.KindOf(err) == ca.KindNotFound {
			return notFound("there is no ACME provisioner %q", name)
		}
		return fromCA(err)
	}
	if prov.Type != "acme" {
		return notFound("provisioner %q is not an ACME provisioner", name)
	}
	p.requireEAB = prov.RequireEAB
	return h(w, r, p)
}

func allowed(methods []string, m string) bool {
	for _, a := range methods {
		if a == m {
			return true
		}
	}
	return false
}

// requestInfo is what a request learns about itself on the way in: who
// signed it, once the JWS verified.
type requestInfo struct{ actor string }

type requestInfoKey struct{}

func requestInfoOf(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// auditRefusal records a refused ACME request in the audit log, as the
// account that signed it or as anonymous (aggregated per source). Refusals
// the Authority decided (a *ca.Error) are already audited there.
func (s *Server) auditRefusal(r *http.Request, route, actor string, err error, p *Problem) {
	if p.Status >= 500 || errors.As(err, new(*ca.Error)) {
		return
	}
	s.ca.RecordDenied(r.Context(), actor, "acme "+route, p.Detail, map[string]string{
		"code": p.ShortType(), "provisioner": r.PathValue("prov"), "remote": r.RemoteAddr,
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status  int
	problem string
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// writeJSON sends v with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return internalProblem("encode response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// directory is RFC 8555, section 7.1.1, plus renewalInfo (RFC 9773).
type directory struct {
	NewNonce    string        `json:"newNonce"`
	NewAccount  string        `json:"newAccount"`
	NewOrder    string        `json:"newOrder"`
	RevokeCert  string        `json:"revokeCert"`
	KeyChange   string        `json:"keyChange"`
	RenewalInfo string        `json:"renewalInfo"`
	Meta        directoryMeta `json:"meta"`
}

type directoryMeta struct {
	Website                 string `json:"website,omitempty"`
	ExternalAccountRequired bool   `json:"externalAccountRequired"`
}

func (s *Server) handleDirectory(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	return writeJSON(w, http.StatusOK, directory{
		NewNonce:    p.url("new-nonce"),
		NewAccount:  p.url("new-account"),
		NewOrder:    p.url("new-order"),
		RevokeCert:  p.url("revoke-cert"),
		KeyChange:   p.url("key-change"),
		RenewalInfo: p.url("renewal-info"),
		Meta:        directoryMeta{ExternalAccountRequired: p.requireEAB},
	})
}

func (s *Server) handleNewNonce(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	if w.Header().Get("Replay-Nonce") == "" {
		return internalProblem("cannot mint a nonce")
	}
	if r.Method == http.MethodGet {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// request is an authenticated ACME POST.
type request struct {
	*parsedJWS
	account *store.ACMEAccount // set for kid requests
	key     *jose.JSONWebKey   // the key that signed
}

// keyRule says which key identification an endpoint accepts.
type keyRule int

const (
	kidOnly  keyRule = iota // an existing account (most endpoints)
	jwkOnly                 // newAccount
	jwkOrKID                // revokeCert
	kidLoose                // kid of an account in any status (account update)
)

// authenticate reads and checks an ACME POST: the JWS form, the url, the key
// (jwk, or kid naming a valid account of this provisioner), the signature,
// and last the nonce, so that only a correctly signed request spends a
// store write.
func (s *Server) authenticate(r *http.Request, p *provisioner, rule keyRule) (*request, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/jose+json" {
		return nil, malformed("Content-Type must be application/jose+json, not %q", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, malformed("cannot read the request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, problem(http.StatusRequestEntityTooLarge, probMalformed, "the request body is over %d bytes", maxBody)
	}
	jws, prob := parseJWS(body)
	if prob != nil {
		return nil, prob
	}
	if want := s.base + r.URL.Path; jws.header.URL != want {
		return nil, unauthorized("the JWS url %q is not the request URL %q", jws.header.URL, want)
	}
	req := &request{parsedJWS: jws}
	switch {
	case jws.jwk != nil:
		if rule != jwkOnly && rule != jwkOrKID {
			return nil, malformed("this request must be signed by an account key named with kid, not jwk")
		}
		req.key = jws.jwk
	default:
		if rule == jwkOnly {
			return nil, malformed("newAccount must carry the account key as jwk, not kid")
		}
		acct, err := s.accountByKID(r.Context(), p, jws.header.KID)
		if err != nil {
			return nil, err
		}
		if rule != kidLoose && acct.Status != store.ACMEValid {
			return nil, unauthorized("account %s is %s", acct.ID, acct.Status)
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(acct.KeyJWK); err != nil {
			return nil, internalProblem("account %s has an unreadable key", acct.ID)
		}
		if prob := checkAccountKey(&k, jws.header.Alg); prob != nil {
			return nil, prob
		}
		req.account, req.key = &acct, &k
	}
	if prob := jws.verify(req.key); prob != nil {
		return nil, prob
	}
	if req.account != nil {
		// Signed by the account: later refusals are audited as its.
		if info := requestInfoOf(r.Context()); info != nil {
			info.actor = "acme:" + req.account.ID
		}
	}
	if prob := s.nonces.redeem(r.Context(), jws.header.Nonce); prob != nil {
		return nil, prob
	}
	return req, nil
}

// accountByKID resolves a kid, which must be an account URL of p.
func (s *Server) accountByKID(ctx context.Context, p *provisioner, kid string) (store.ACMEAccount, error) {
	prefix := p.url("account") + "/"
	id, ok := strings.CutPrefix(kid, prefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return store.ACMEAccount{}, problem(http.StatusBadRequest, probAccountDoesNotExist, "kid %q is not an account URL of this directory", kid)
	}
	acct, err := s.st.GetACMEAccount(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && acct.Provisioner != p.name) {
		return store.ACMEAccount{}, problem(http.StatusBadRequest, probAccountDoesNotExist, "no account %s", id)
	}
	if err != nil {
		return store.ACMEAccount{}, storeProblem(err)
	}
	return acct, nil
}

// decodePayload reads a JSON payload into v, refusing POST-as-GET and
// trailing data. Unknown members are ignored, as RFC 8555 asks of servers.
func decodePayload(req *request, v any) error {
	if req.postAsGet {
		return malformed("this request needs a JSON payload, not POST-as-GET")
	}
	if err := json.Unmarshal(req.payload, v); err != nil {
		return malformed("the payload is not valid JSON for this request: %v", err)
	}
	return nil
}

// storeProblem maps a store failure.
func storeProblem(err error) *Problem {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound("not found")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return problem(http.StatusServiceUnavailable, probServerInternal, "request cancelled")
	}
	return problem(http.StatusServiceUnavailable, probServerInternal, "the store failed")
}

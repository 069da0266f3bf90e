package acme

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// maxIdentifiers caps the identifiers of one order.
const maxIdentifiers = 100

type ident = store.ACMEIdentifier

// orderJSON is the order object (RFC 8555, section 7.1.3).
type orderJSON struct {
	Status         string          `json:"status"`
	Expires        string          `json:"expires"`
	Identifiers    []ident         `json:"identifiers"`
	NotBefore      string          `json:"notBefore,omitempty"`
	NotAfter       string          `json:"notAfter,omitempty"`
	Error          json.RawMessage `json:"error,omitempty"`
	Authorizations []string        `json:"authorizations"`
	Finalize       string          `json:"finalize"`
	Certificate    string          `json:"certificate,omitempty"`
	Replaces       string          `json:"replaces,omitempty"`
}

type authzJSON struct {
	Identifier ident           `json:"identifier"`
	Status     string          `json:"status"`
	Expires    string          `json:"expires"`
	Challenges []challengeJSON `json:"challenges"`
	Wildcard   bool            `json:"wildcard,omitempty"`
}

type challengeJSON struct {
	Type      string          `json:"type"`
	URL       string          `json:"url"`
	Status    string          `json:"status"`
	Token     string          `json:"token"`
	Validated string          `json:"validated,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// orderStatus is the status an order shows at now: a pending or ready order
// past its expiry is invalid (RFC 8555, section 7.1.6).
func orderStatus(o store.ACMEOrder, now time.Time) string {
	if (o.Status == store.ACMEPending || o.Status == store.ACMEReady) && now.After(o.Expires) {
		return store.ACMEInvalid
	}
	return o.Status
}

func authzStatus(a store.ACMEAuthorization, now time.Time) string {
	if (a.Status == store.ACMEPending || a.Status == store.ACMEValid) && now.After(a.Expires) {
		return store.ACMEExpired
	}
	return a.Status
}

func (s *Server) orderView(p *provisioner, o store.ACMEOrder) orderJSON {
	v := orderJSON{
		Status:      orderStatus(o, s.now()),
		Expires:     rfc3339(o.Expires),
		Identifiers: o.Identifiers,
		NotBefore:   rfc3339(o.NotBefore),
		NotAfter:    rfc3339(o.NotAfter),
		Error:       o.Error,
		Finalize:    p.url("order", o.ID, "finalize"),
		Replaces:    o.Replaces,
	}
	for _, id := range o.Authorizations {
		v.Authorizations = append(v.Authorizations, p.url("authz", id))
	}
	if o.CertSerial != "" {
		v.Certificate = p.url("certificate", string(o.CertSerial))
	}
	return v
}

func (s *Server) authzView(p *provisioner, a store.ACMEAuthorization) authzJSON {
	v := authzJSON{Identifier: a.Identifier, Status: authzStatus(a, s.now()), Expires: rfc3339(a.Expires), Wildcard: a.Wildcard}
	for _, c := range a.Challenges {
		v.Challenges = append(v.Challenges, s.challengeView(p, a, c))
	}
	return v
}

func (s *Server) challengeView(p *provisioner, a store.ACMEAuthorization, c store.ACMEChallenge) challengeJSON {
	return challengeJSON{Type: c.Type, URL: p.url("challenge", a.ID, c.ID), Status: c.Status, Token: c.Token, Validated: rfc3339(c.Validated), Error: c.Error}
}

type newOrderPayload struct {
	Identifiers []ident `json:"identifiers"`
	NotBefore   string  `json:"notBefore"`
	NotAfter    string  `json:"notAfter"`
	Replaces    string  `json:"replaces"`
}

// normalizeIdentifier checks one identifier and returns it in canonical
// form: DNS names in lower case, IP addresses as RFC 5952 text.
func normalizeIdentifier(id ident) (ident, bool, *Problem) {
	switch id.Type {
	case "dns":
		v := strings.ToLower(id.Value)
		wildcard := strings.HasPrefix(v, "*.")
		base := strings.TrimPrefix(v, "*.")
		if _, err := policy.ParseNames([]string{base}); err != nil || net.ParseIP(base) != nil || !strings.Contains(base, ".") && base != "localhost" || strings.Contains(base, "*") {
			p := malformed("%q is not a valid DNS identifier", id.Value)
			p.Type = errorNS + probRejectedIdentifier
			return id, false, p
		}
		return ident{Type: "dns", Value: v}, wildcard, nil
	case "ip":
		ip := net.ParseIP(id.Value)
		if ip == nil {
			p := malformed("%q is not an IP address", id.Value)
			p.Type = errorNS + probRejectedIdentifier
			return id, false, p
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return ident{Type: "ip", Value: ip.String()}, false, nil
	}
	return id, false, problem(http.StatusBadRequest, probUnsupportedIdentifier, "identifier type %q is not supported (use dns or ip)", id.Type)
}

// namesOf turns identifiers into the names policy and issuance speak.
func namesOf(ids []ident) policy.Names {
	var n policy.Names
	for _, id := range ids {
		switch id.Type {
		case "dns":
			n.DNS = append(n.DNS, id.Value)
		case "ip":
			n.IPs = append(n.IPs, net.ParseIP(id.Value))
		}
	}
	return n
}

func (s *Server) handleNewOrder(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	var in newOrderPayload
	if err := decodePayload(req, &in); err != nil {
		return err
	}
	if len(in.Identifiers) == 0 {
		return malformed("an order needs at least one identifier")
	}
	if len(in.Identifiers) > maxIdentifiers {
		return problem(http.StatusBadRequest, probRejectedIdentifier, "an order may have at most %d identifiers", maxIdentifiers)
	}
	now := s.now()
	var nb, na time.Time
	if in.NotBefore != "" {
		if nb, err = time.Parse(time.RFC3339, in.NotBefore); err != nil {
			return malformed("notBefore is not an RFC 3339 time: %v", err)
		}
		if nb.Before(now.Add(-time.Hour)) || nb.After(now.Add(policy.DefaultMaxTTL)) {
			return malformed("notBefore must lie between an hour ago and %s from now", policy.DefaultMaxTTL)
		}
	}
	if in.NotAfter != "" {
		if na, err = time.Parse(time.RFC3339, in.NotAfter); err != nil {
			return malformed("notAfter is not an RFC 3339 time: %v", err)
		}
		if !nb.IsZero() && !na.After(nb) {
			return malformed("notAfter must be after notBefore")
		}
	}
	ids := make([]ident, 0, len(in.Identifiers))
	wild := make([]bool, 0, len(in.Identifiers))
	seen := map[ident]bool{}
	var subs []*Problem
	for _, raw := range in.Identifiers {
		id, wc, prob := normalizeIdentifier(raw)
		if prob != nil {
			if prob.Type == errorNS+probUnsupportedIdentifier {
				return prob
			}
			raw := raw
			prob.Identifier = &raw
			subs = append(subs, prob)
			continue
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
		wild = append(wild, wc)
	}
	// Policy decides each identifier, so that the client learns which ones
	// are refused (RFC 8555, section 6.7.1, subproblems).
	for _, id := range ids {
		d, err := s.ca.CheckNames(r.Context(), p.name, policy.Request{Names: namesOf([]ident{id})})
		if err != nil {
			return fromCA(err)
		}
		if !d.Allowed {
			id := id
			sp := problem(http.StatusBadRequest, probRejectedIdentifier, "%s", d.Reason)
			sp.Identifier = &id
			subs = append(subs, sp)
		}
	}
	if len(subs) > 0 {
		prob := problem(http.StatusBadRequest, probRejectedIdentifier, "the order has identifiers this provisioner's policy does not allow")
		if len(subs) == 1 {
			prob.Detail = subs[0].Detail
		}
		prob.Subproblems = subs
		return prob
	}
	if !na.IsZero() {
		start := now
		if !nb.IsZero() {
			start = nb
		}
		d, err := s.ca.CheckNames(r.Context(), p.name, policy.Request{Names: namesOf(ids), TTL: na.Sub(start)})
		if err != nil {
			return fromCA(err)
		}
		if !d.Allowed {
			return malformed("the requested validity is not allowed: %s", d.Reason)
		}
	}
	if in.Replaces != "" {
		if err := s.checkReplaces(r.Context(), req, in.Replaces, ids); err != nil {
			return err
		}
	}
	o := store.ACMEOrder{
		ID:          store.NewID(),
		AccountID:   req.account.ID,
		Provisioner: p.name,
		Status:      store.ACMEPending,
		Expires:     now.Add(s.orderLife),
		Identifiers: ids,
		NotBefore:   nb,
		NotAfter:    na,
		Replaces:    in.Replaces,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	authzs := make([]store.ACMEAuthorization, len(ids))
	for i, id := range ids {
		a := store.ACMEAuthorization{
			ID:         store.NewID(),
			AccountID:  req.account.ID,
			OrderID:    o.ID,
			Identifier: id,
			Wildcard:   wild[i],
			Status:     store.ACMEPending,
			Expires:    o.Expires,
		}
		if a.Wildcard {
			a.Identifier.Value = strings.TrimPrefix(id.Value, "*.")
		}
		for _, typ := range challengeTypes(id, a.Wildcard) {
			a.Challenges = append(a.Challenges, store.ACMEChallenge{ID: store.NewID(), Type: typ, Token: challengeToken(), Status: store.ACMEPending})
		}
		authzs[i] = a
		o.Authorizations = append(o.Authorizations, a.ID)
	}
	if err := s.st.CreateACMEOrder(r.Context(), o, authzs); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem(http.StatusConflict, probAlreadyReplaced, "certificate %s has already been replaced by another order", in.Replaces)
		}
		return storeProblem(err)
	}
	s.metrics.orders.WithLabelValues("created").Inc()
	w.Header().Set("Location", p.url("order", o.ID))
	return writeJSON(w, http.StatusCreated, s.orderView(p, o))
}

// challengeTypes offers every challenge that can prove an identifier:
// wildcards only by dns-01, IP addresses not by dns-01 (RFC 8738).
func challengeTypes(id ident, wildcard bool) []string {
	switch {
	case wildcard:
		return []string{"dns-01"}
	case id.Type == "ip":
		return []string{"http-01", "tls-alpn-01"}
	}
	return []string{"http-01", "dns-01", "tls-alpn-01"}
}

// orderFor reads an order and checks that the requester owns it.
func (s *Server) orderFor(ctx context.Context, req *request, id string) (store.ACMEOrder, error) {
	o, err := s.st.GetACMEOrder(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return o, notFound("no order %s", id)
	}
	if err != nil {
		return o, storeProblem(err)
	}
	if o.AccountID != req.account.ID {
		return o, unauthorized("order %s belongs to another account", id)
	}
	return o, nil
}

func (s *Server) handleOrder(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	if !req.postAsGet {
		return malformed("fetch an order with POST-as-GET (an empty payload)")
	}
	o, err := s.orderFor(r.Context(), req, r.PathValue("id"))
	if err != nil {
		return err
	}
	if o.Status == store.ACMEProcessing {
		w.Header().Set("Retry-After", "1")
	}
	return writeJSON(w, http.StatusOK, s.orderView(p, o))
}

// authzFor reads an authorization and checks that the requester owns it.
func (s *Server) authzFor(ctx context.Context, req *request, id string) (store.ACMEAuthorization, error) {
	a, err := s.st.GetACMEAuthorization(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return a, notFound("no authorization %s", id)
	}
	if err != nil {
		return a, storeProblem(err)
	}
	if a.AccountID != req.account.ID {
		return a, unauthorized("authorization %s belongs to another account", id)
	}
	return a, nil
}

func (s *Server) handleAuthz(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	a, err := s.authzFor(r.Context(), req, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !req.postAsGet {
		var in struct {
			Status string `json:"status"`
		}
		if err := decodePayload(req, &in); err != nil {
			return err
		}
		if in.Status != store.ACMEDeactivated {
			return malformed("an authorization's status can only be set to deactivated")
		}
		if err := s.st.DeactivateACMEAuthorization(r.Context(), a.ID); err != nil {
			if errors.Is(err, store.ErrStateChanged) {
				return malformed("authorization %s is %s and cannot be deactivated", a.ID, a.Status)
			}
			return storeProblem(err)
		}
		if a, err = s.st.GetACMEAuthorization(r.Context(), a.ID); err != nil {
			return storeProblem(err)
		}
	}
	if a.Status == store.ACMEPending && processing(a) {
		w.Header().Set("Retry-After", "1")
	}
	return writeJSON(w, http.StatusOK, s.authzView(p, a))
}

func processing(a store.ACMEAuthorization) bool {
	for _, c := range a.Challenges {
		if c.Status == store.ACMEProcessing {
			return true
		}
	}
	return false
}

// handleChallenge starts validating a challenge (RFC 8555, section 7.5.1)
// and waits up to ValidationWait for the result, so that a client usually
// learns the outcome from this response instead of polling.
func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	a, err := s.authzFor(r.Context(), req, r.PathValue("authz"))
	if err != nil {
		return err
	}
	idx := -1
	for i, c := range a.Challenges {
		if c.ID == r.PathValue("id") {
			idx = i
		}
	}
	if idx < 0 {
		return notFound("no challenge %s in authorization %s", r.PathValue("id"), a.ID)
	}
	if !req.postAsGet {
		// The payload is an empty JSON object; anything else is ignored, as
		// clients of older drafts send keyAuthorization.
		var in map[string]any
		if err := decodePayload(req, &in); err != nil {
			return err
		}
		if authzStatus(a, s.now()) == store.ACMEPending && a.Challenges[idx].Status == store.ACMEPending {
			a, err = s.startValidation(r.Context(), req, a, idx)
			if err != nil {
				return err
			}
		}
	}
	c := a.Challenges[idx]
	if c.Status == store.ACMEProcessing || c.Status == store.ACMEPending && processing(a) {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Add("Link", `<`+p.url("authz", a.ID)+`>;rel="up"`)
	return writeJSON(w, http.StatusOK, s.challengeView(p, a, c))
}

// startValidation marks the challenge processing, queues its validation
// and waits for it up to ValidationWait; it returns the authorization as it
// then stands.
func (s *Server) startValidation(ctx context.Context, req *request, a store.ACMEAuthorization, idx int) (store.ACMEAuthorization, error) {
	c := a.Challenges[idx]
	if err := s.st.StartACMEChallenge(ctx, a.ID, c.ID); err != nil {
		if !errors.Is(err, store.ErrStateChanged) {
			return a, storeProblem(err)
		}
		// Another request started it: report how it stands.
	} else {
		tp := req.account.Thumbprint
		job := &validationJob{
			authz:      a.ID,
			challenge:  c.ID,
			typ:        c.Type,
			identifier: a.Identifier,
			token:      c.Token,
			keyAuth:    c.Token + "." + tp,
			done:       make(chan struct{}),
		}
		select {
		case s.jobs <- job:
		case <-ctx.Done():
			// The challenge stays processing; record it failed rather than
			// leave it stuck.
			s.finish(context.WithoutCancel(ctx), job, &Problem{Type: errorNS + probServerInternal, Detail: "validation was not started: the request was cancelled"})
			return a, storeProblem(ctx.Err())
		}
		if s.wait > 0 {
			timer := time.NewTimer(s.wait)
			select {
			case <-job.done:
			case <-timer.C:
			case <-ctx.Done():
			}
			timer.Stop()
		}
	}
	updated, err := s.st.GetACMEAuthorization(ctx, a.ID)
	if err != nil {
		return a, storeProblem(err)
	}
	return updated, nil
}

type finalizePayload struct {
	CSR string `json:"csr"`
}

// handleFinalize issues the order's certificate (RFC 8555, section 7.4).
// The CSR is checked against the order first, so that a wrong CSR leaves the
// order ready for another try; then the certificate is issued through the
// CA's one issuance path, and recorded in the same transaction as the
// order's move from ready to valid and the audit record: there is no state
// in which a certificate exists and its order does not say so.
func (s *Server) handleFinalize(w http.ResponseWriter, r *http.Request, p *provisioner) error {
	req, err := s.authenticate(r, p, kidOnly)
	if err != nil {
		return err
	}
	var in finalizePayload
	if err := decodePayload(req, &in); err != nil {
		return err
	}
	o, err := s.orderFor(r.Context(), req, r.PathValue("id"))
	if err != nil {
		return err
	}
	now := s.now()
	switch st := orderStatus(o, now); st {
	case store.ACMEReady:
	case store.ACMEPending:
		return problem(http.StatusForbidden, probOrderNotReady, "order %s is pending: every authorization must be valid before finalize", o.ID)
	default:
		return problem(http.StatusForbidden, probOrderNotReady, "order %s is %s, not ready", o.ID, st)
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.CSR, "="))
	if err != nil || len(der) == 0 {
		return problem(http.StatusBadRequest, probBadCSR, "csr is not base64url DER")
	}
	names := namesOf(o.Identifiers)
	if err := ca.CheckOrderCSR(der, names); err != nil {
		return fromCA(err)
	}
	issued, err := s.ca.SignOrder(r.Context(), ca.OrderRequest{
		Provisioner: p.name,
		CSR:         der,
		Names:       names,
		NotBefore:   o.NotBefore,
		NotAfter:    o.NotAfter,
		Actor:       "acme:" + req.account.ID,
		Detail:      map[string]string{"acme_order": o.ID},
		OrderID:     o.ID,
	})
	if err != nil {
		if ca.KindOf(err) == ca.KindConflict {
			// Finalized meanwhile (or no longer ready): nothing was issued.
			return problem(http.StatusForbidden, probOrderNotReady, "order %s is no longer ready", o.ID)
		}
		prob := fromCA(err)
		if prob.Status < 500 {
			// Refused: the order becomes invalid with the reason. A store
			// failure leaves it ready, with nothing issued, for a retry.
			body, _ := json.Marshal(prob)
			if ferr := s.st.FailACMEOrder(context.WithoutCancel(r.Context()), o.ID, body); ferr != nil {
				s.log.Error("acme: recording a failed finalize", "order", o.ID, "error", ferr)
			}
			s.metrics.orders.WithLabelValues("invalid").Inc()
		}
		return prob
	}
	s.metrics.orders.WithLabelValues("valid").Inc()
	o.Status, o.CertSerial = store.ACMEValid, issued.Serial
	w.Header().Set("Location", p.url("order", o.ID))
	return writeJSON(w, http.StatusOK, s.orderView(p, o))
}

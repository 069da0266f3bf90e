package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// forbid refuses what the caller's role or grants do not reach, and audits
// the refusal.
func (s *Server) forbid(r *http.Request, c caller, msg string) error {
	s.ca.RecordDenied(r.Context(), c.actor(), r.Method+" "+r.URL.Path, msg, map[string]string{"role": string(c.op.Role), "remote": r.RemoteAddr})
	return newError(http.StatusForbidden, "forbidden", msg)
}

// mayRevoke decides whether c may revoke another certificate than the one
// it presents: an admin any; an operator those of its provisioners.
func (s *Server) mayRevoke(r *http.Request, c caller, serial store.Serial) error {
	if c.admin == "" {
		return newError(http.StatusForbidden, "forbidden", "a certificate holder may revoke only the certificate it presents")
	}
	if !c.can(operator.Issue) {
		return s.forbid(r, c, fmt.Sprintf("operator %s has role %s, which does not revoke certificates", c.op.Name, c.op.Role))
	}
	if c.op.Role == store.RoleAdmin {
		return nil
	}
	rec, err := s.st.GetCertificate(r.Context(), serial)
	if err != nil {
		return nil // the revocation says it does not exist
	}
	if !c.actsFor(rec.Provisioner) {
		return s.forbid(r, c, fmt.Sprintf("operator %s does not act for provisioner %q, which issued %s", c.op.Name, rec.Provisioner, serial))
	}
	return nil
}

// mayManageEntry decides whether c may make, change or delete entry e: an
// admin any; an operator those whose SPIFFE ID and DNS names one of its
// spiffe provisioners allows.
func (s *Server) mayManageEntry(r *http.Request, c caller, e store.Entry) error {
	if c.op.Role == store.RoleAdmin {
		return nil
	}
	names := policy.Names{DNS: e.DNSNames}
	if u, err := url.Parse(e.SPIFFEID); err == nil {
		names.URIs = []*url.URL{u}
	}
	for _, prov := range c.op.Provisioners {
		p, _, err := s.ca.Provisioner(r.Context(), prov)
		if err != nil || p.Type != store.ProvisionerSPIFFE {
			continue
		}
		if d, err := s.ca.CheckNames(r.Context(), prov, policy.Request{Names: names}); err == nil && d.Allowed {
			return nil
		}
	}
	return s.forbid(r, c, fmt.Sprintf("no spiffe provisioner operator %s acts for allows %s", c.op.Name, ca.Clip(e.SPIFFEID)))
}

func operatorBody(op store.Operator) wire.Operator {
	out := wire.Operator{Name: op.Name, Role: op.Role, Provisioners: op.Provisioners, Identity: op.Identity, CreatedAt: op.CreatedAt.UTC()}
	if out.Provisioners == nil {
		out.Provisioners = []string{}
	}
	if !op.RetiredAt.IsZero() {
		t := op.RetiredAt.UTC()
		out.RetiredAt = &t
	}
	return out
}

func (s *Server) handleListOperators(w http.ResponseWriter, r *http.Request, _ caller) error {
	ops, err := s.operators.List(r.Context())
	if err != nil {
		return err
	}
	out := wire.OperatorList{Operators: make([]wire.Operator, 0, len(ops))}
	for _, op := range ops {
		out.Operators = append(out.Operators, operatorBody(op))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAddOperator(w http.ResponseWriter, r *http.Request, c caller) error {
	req, csr, err := decodeOperatorRequest(w, r)
	if err != nil {
		return err
	}
	op, issued, err := s.operators.Add(r.Context(), operator.AddRequest{Name: req.Name, Role: req.Role, Provisioners: req.Provisioners,
		Identity: req.Identity, PublicKey: csr, TTL: req.TTL.Std(), Actor: c.actor()})
	if err != nil {
		return err
	}
	out := wire.OperatorCredential{Operator: operatorBody(op)}
	if issued != nil {
		body := issuedBody(issued)
		out.Certificate = &body
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) handleOperatorCredential(w http.ResponseWriter, r *http.Request, c caller) error {
	req, csr, err := decodeOperatorRequest(w, r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	issued, err := s.operators.Credential(r.Context(), name, csr, req.TTL.Std(), c.actor())
	if err != nil {
		return err
	}
	op, err := s.operators.Lookup(r.Context(), s.ca.AdminURIPrefix()+name)
	if err != nil {
		return err
	}
	body := issuedBody(issued)
	writeJSON(w, http.StatusCreated, wire.OperatorCredential{Operator: operatorBody(op), Certificate: &body})
	return nil
}

func (s *Server) handleRetireOperator(w http.ResponseWriter, r *http.Request, c caller) error {
	revoked, err := s.operators.Retire(r.Context(), r.PathValue("name"), c.actor())
	if err != nil {
		return err
	}
	if revoked == nil {
		revoked = []store.Serial{}
	}
	writeJSON(w, http.StatusOK, wire.RevokedSet{Revoked: revoked})
	return nil
}

// handleListAudit pages the audit log: ?after=SEQ (0: from the start) and
// ?limit=N (1 to 1000, default 100).
func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request, _ caller) error {
	q := r.URL.Query()
	after, limit := int64(0), 100
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return newError(http.StatusBadRequest, "bad_request", "after must be a sequence number (0 or more)")
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return newError(http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 1000")
		}
		limit = n
	}
	evs, err := s.st.ListAudit(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := wire.AuditPage{Events: make([]wire.AuditEvent, 0, len(evs))}
	for _, ev := range evs {
		out.Events = append(out.Events, wire.AuditEvent{Seq: ev.Seq, Time: ev.Time.UTC(), Type: ev.Type, Actor: ev.Actor, Subject: ev.Subject, Outcome: ev.Outcome, Detail: ev.Detail})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// decodeOperatorRequest reads an OperatorRequest and returns the public
// key of its CSR, whose signature must verify; the CSR's names are ignored
// (the credential carries the operator's identity only).
func decodeOperatorRequest(w http.ResponseWriter, r *http.Request) (wire.OperatorRequest, any, error) {
	var req wire.OperatorRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return req, nil, err
	}
	if req.CSR == "" {
		if req.Identity != "" {
			return req, nil, nil // enrolled: its certificate comes from its own CA
		}
		return req, nil, newError(http.StatusBadRequest, "bad_request", "csr is required: the PEM certificate request of the operator's key (or identity, for a certificate from another CA)")
	}
	csr, err := ca.ParseCSRPEM([]byte(req.CSR))
	if err != nil {
		return req, nil, err
	}
	return req, csr.PublicKey, nil
}

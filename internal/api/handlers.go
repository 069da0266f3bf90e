package api

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/operator"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

func issuedBody(is *ca.Issued) wire.Issued {
	return wire.Issued{
		Certificate: string(is.PEM()),
		Serial:      is.Serial,
		NotBefore:   is.Certificate.NotBefore.UTC(),
		NotAfter:    is.Certificate.NotAfter.UTC(),
	}
}

func (s *Server) handleSign(w http.ResponseWriter, r *http.Request) error {
	var req wire.SignRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return newError(http.StatusUnauthorized, "unauthorized", "a one-time token is required in field \"token\"")
	}
	if req.CSR == "" {
		return newError(http.StatusBadRequest, "bad_csr", "a PEM CSR is required in field \"csr\"")
	}
	is, err := s.ca.Sign(r.Context(), ca.SignRequest{CSR: []byte(req.CSR), Token: req.Token, TTL: req.TTL.Std()})
	if err != nil {
		return err
	}
	s.metrics.issued.WithLabelValues("sign").Inc()
	writeJSON(w, http.StatusCreated, issuedBody(is))
	return nil
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) error {
	cert := clientCert(r)
	if cert == nil {
		return newError(http.StatusUnauthorized, "unauthorized", "renewal needs the current certificate as the TLS client certificate")
	}
	var req wire.RenewRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	// An operator's credential renews only while the operator is active.
	if uri, ok := s.ca.IsAdmin(cert); ok {
		if _, err := s.operators.Lookup(r.Context(), uri); err != nil {
			return err
		}
	}
	is, err := s.ca.Renew(r.Context(), ca.RenewRequest{Current: cert, CSR: []byte(req.CSR), TTL: req.TTL.Std()})
	if err != nil {
		return err
	}
	s.metrics.issued.WithLabelValues("renew").Inc()
	writeJSON(w, http.StatusCreated, issuedBody(is))
	return nil
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	c, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req wire.RevokeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	serial, err := parseSerial(req.Serial)
	if err != nil {
		return err
	}
	if serial != store.SerialOf(c.cert.SerialNumber) {
		if err := s.mayRevoke(r, c, serial); err != nil {
			return err
		}
	}
	reason, err := revocation.ParseReason(req.Reason)
	if err != nil {
		return err
	}
	rec, renewals, err := s.revocation.Revoke(r.Context(), revocation.Request{Serial: string(serial), Reason: reason, Actor: c.actor(), Renewals: req.Renewals})
	if err != nil {
		return err
	}
	s.metrics.revoked.Add(float64(1 + len(renewals)))
	if renewals == nil {
		renewals = []store.Serial{}
	}
	body := certificateBody(rec, false)
	body.RevokedRenewals = renewals
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) handleRevokeMatching(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.RevokeMatchingRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Issuer != "" {
		if req.Name != "" || req.SPIFFEID != "" {
			return newError(http.StatusBadRequest, "bad_request", "give one of name, spiffe_id or issuer")
		}
		return s.revokeIssuer(w, r, c, req)
	}
	m := revocation.Match{Name: req.Name}
	if req.SPIFFEID != "" {
		if !strings.HasPrefix(req.SPIFFEID, "spiffe://") {
			return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("spiffe_id %q is not a SPIFFE ID", ca.Clip(req.SPIFFEID)))
		}
		if m.Name != "" {
			return newError(http.StatusBadRequest, "bad_request", "give one of name or spiffe_id")
		}
		m.Name = req.SPIFFEID
	}
	reason, err := revocation.ParseReason(req.Reason)
	if err != nil {
		return err
	}
	serials, err := s.revocation.RevokeMatching(r.Context(), m, reason, c.actor())
	if err != nil {
		return err
	}
	s.metrics.revoked.Add(float64(len(serials)))
	if serials == nil {
		serials = []store.Serial{}
	}
	writeJSON(w, http.StatusOK, wire.RevokedSet{Revoked: serials})
	return nil
}

// revokeIssuer revokes an intermediate generation and what it signed.
func (s *Server) revokeIssuer(w http.ResponseWriter, r *http.Request, c caller, req wire.RevokeMatchingRequest) error {
	name, genText, ok := strings.Cut(req.Issuer, "/")
	gen, err := strconv.Atoi(genText)
	if !ok || err != nil || gen < 1 || name == "" {
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("issuer %q is not NAME/GENERATION, e.g. default/1", ca.Clip(req.Issuer)))
	}
	reason, err := revocation.ParseReason(req.Reason)
	if err != nil {
		return err
	}
	done, err := s.revocation.RevokeIssuer(r.Context(), name, gen, reason, c.actor())
	if err != nil {
		return err
	}
	s.metrics.revoked.Add(float64(len(done.Revoked)))
	if done.Revoked == nil {
		done.Revoked = []store.Serial{}
	}
	writeJSON(w, http.StatusOK, wire.RevokedSet{Revoked: done.Revoked, Intermediate: done.Intermediate, Replacement: done.Replacement})
	return nil
}

// parseSerial is ca.ParseSerial with its error as a 400.
func parseSerial(s string) (store.Serial, error) {
	serial, err := ca.ParseSerial(s)
	if err != nil {
		return "", newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	return serial, nil
}

func certificateBody(c store.Certificate, withPEM bool) wire.Certificate {
	out := wire.Certificate{
		Serial:      c.Serial,
		Subject:     c.Subject,
		Names:       c.Names,
		Provisioner: c.Provisioner,
		Issuer:      c.Issuer,
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
		Status:      string(c.Status),
		RenewedFrom: c.RenewedFrom,
	}
	if out.Names == nil {
		out.Names = []string{}
	}
	if c.Status == store.StatusRevoked {
		at := c.RevokedAt.UTC()
		out.RevokedAt = &at
		out.RevocationReason = revocation.Reason(c.RevocationReason).String()
	}
	if withPEM {
		out.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	}
	return out
}

func (s *Server) handleListCertificates(w http.ResponseWriter, r *http.Request, _ caller) error {
	q := r.URL.Query()
	now := s.now()
	f := store.CertFilter{Name: q.Get("name"), After: q.Get("after"), Now: now}
	switch st := q.Get("status"); st {
	case "":
	case "valid", "revoked", "expired":
		f.Status = store.Status(st)
	default:
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("status %q must be valid, revoked or expired", st))
	}
	var err error
	if f.ExpiringBefore, err = parseExpiringBefore(q.Get("expiring_before"), now); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	page, err := s.st.ListCertificates(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.CertificatePage{Certificates: make([]wire.Certificate, 0, len(page.Certificates)), Next: page.Next}
	for _, c := range page.Certificates {
		out.Certificates = append(out.Certificates, certificateBody(c, false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleGetCertificate(w http.ResponseWriter, r *http.Request, _ caller) error {
	serial, err := parseSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	c, err := s.st.GetCertificate(r.Context(), serial)
	if err != nil {
		if isNotFound(err) {
			return newError(http.StatusNotFound, "not_found", fmt.Sprintf("no certificate with serial %s", serial))
		}
		return err
	}
	writeJSON(w, http.StatusOK, certificateBody(c, true))
	return nil
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.TokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Join {
		if !c.can(operator.Administer) {
			return s.forbid(r, c, "join tokens admit nodes; they are minted by admins")
		}
		return s.createJoinToken(w, r, c, req)
	}
	if !c.actsFor(req.Provisioner) {
		return s.forbid(r, c, fmt.Sprintf("operator %s does not act for provisioner %q", c.op.Name, ca.Clip(req.Provisioner)))
	}
	if req.SPIFFEID != "" {
		return newError(http.StatusBadRequest, "bad_request", `spiffe_id names a node and goes with "join": true`)
	}
	g, err := s.provisioners.CreateToken(r.Context(), provisioner.TokenRequest{Subject: req.Subject, SANs: req.SANs, Provisioner: req.Provisioner, TTL: req.TTL.Std(), Actor: c.actor()})
	if err != nil {
		return err
	}
	s.metrics.tokens.Inc()
	writeTokenResponse(w, g)
	return nil
}

// writeTokenResponse sends a minted token, of either kind.
func writeTokenResponse(w http.ResponseWriter, g ca.TokenGrant) {
	writeJSON(w, http.StatusCreated, wire.Token{Token: g.Token, ID: g.ID, ExpiresAt: g.ExpiresAt.UTC(), Provisioner: g.Provisioner})
}

func provisionerResponse(p store.Provisioner) wire.Provisioner {
	c, u := p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return wire.Provisioner{Name: p.Name, Type: p.Type, Policy: p.Policy, RequireEAB: p.RequireEAB, Nodes: p.Nodes, CreatedAt: &c, UpdatedAt: &u}
}

func (s *Server) handleListProvisioners(w http.ResponseWriter, r *http.Request, _ caller) error {
	all, err := s.st.ListProvisioners(r.Context())
	if err != nil {
		return err
	}
	out := wire.ProvisionerList{Provisioners: make([]wire.Provisioner, 0, len(all))}
	for _, p := range all {
		out.Provisioners = append(out.Provisioners, provisionerResponse(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAddProvisioner(w http.ResponseWriter, r *http.Request, c caller) error {
	var body wire.Provisioner
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	p, err := s.provisioners.Add(r.Context(), provisioner.Change{Provisioner: store.Provisioner{Name: body.Name, Type: body.Type, Policy: body.Policy, RequireEAB: body.RequireEAB, Nodes: body.Nodes}, Actor: c.actor()})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, provisionerResponse(p))
	return nil
}

func (s *Server) handleGetProvisioner(w http.ResponseWriter, r *http.Request, _ caller) error {
	name := r.PathValue("name")
	p, err := s.st.GetProvisioner(r.Context(), name)
	if err != nil {
		if isNotFound(err) {
			return newError(http.StatusNotFound, "not_found", fmt.Sprintf("no provisioner named %q", name))
		}
		return err
	}
	writeJSON(w, http.StatusOK, provisionerResponse(p))
	return nil
}

func (s *Server) handleUpdateProvisioner(w http.ResponseWriter, r *http.Request, c caller) error {
	var body wire.Provisioner
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	name := r.PathValue("name")
	if body.Name != "" && body.Name != name {
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("body names provisioner %q but the path names %q", body.Name, name))
	}
	p, err := s.provisioners.Update(r.Context(), provisioner.Change{Provisioner: store.Provisioner{Name: name, Type: body.Type, Policy: body.Policy, RequireEAB: body.RequireEAB, Nodes: body.Nodes}, Actor: c.actor()})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, provisionerResponse(p))
	return nil
}

func (s *Server) handleRemoveProvisioner(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.provisioners.Remove(r.Context(), r.PathValue("name"), c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleCheckPolicy(w http.ResponseWriter, r *http.Request, _ caller) error {
	var req wire.PolicyCheckRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	d, err := s.provisioners.CheckPolicy(r.Context(), provisioner.CheckRequest{Provisioner: req.Provisioner, SANs: req.SANs, TTL: req.TTL.Std(), KeyType: string(req.KeyType)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) handleRoots(w http.ResponseWriter, _ *http.Request) error {
	return writePEM(w, s.ca.Hierarchy().RootsPEM())
}

func (s *Server) handleIntermediates(w http.ResponseWriter, _ *http.Request) error {
	return writePEM(w, s.ca.Hierarchy().IntermediatesPEM(s.now()))
}

func writePEM(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(b)
	return err
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ok\n"))
	return err
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.st.Ping(r.Context()); err != nil {
		s.log.Warn("readiness check failed", "error", err)
		return newError(http.StatusServiceUnavailable, "unavailable", "the store is not reachable")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ok\n"))
	return err
}

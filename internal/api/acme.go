package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/meshpki/meshpki/internal/acme"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/wire"
)

// handleCreateEAB makes an external account binding key for an ACME
// provisioner; the HMAC key is in this response only.
func (s *Server) handleCreateEAB(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.EABKeyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Provisioner == "" {
		return newError(http.StatusBadRequest, "bad_request", "provisioner is required")
	}
	if !c.actsFor(req.Provisioner) {
		return s.forbid(r, c, fmt.Sprintf("operator %s does not act for provisioner %q", c.op.Name, ca.Clip(req.Provisioner)))
	}
	k, err := s.acme.CreateEABKey(r.Context(), req.Provisioner, c.actor())
	if err != nil {
		return eabError(err)
	}
	writeJSON(w, http.StatusCreated, k)
	return nil
}

// handleListEAB lists the EAB keys of ?provisioner=NAME, without secrets.
func (s *Server) handleListEAB(w http.ResponseWriter, r *http.Request, _ caller) error {
	prov := r.URL.Query().Get("provisioner")
	if prov == "" {
		return newError(http.StatusBadRequest, "bad_request", "query parameter provisioner is required")
	}
	keys, err := s.acme.ListEABKeys(r.Context(), prov)
	if err != nil {
		return eabError(err)
	}
	if keys == nil {
		keys = []wire.EABKeyInfo{}
	}
	writeJSON(w, http.StatusOK, wire.EABKeyList{Keys: keys})
	return nil
}

func eabError(err error) error {
	if errors.Is(err, acme.ErrNotACMEProvisioner) {
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	return err
}

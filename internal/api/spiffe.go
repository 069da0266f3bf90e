package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// SPIFFE registration endpoints (admin): registration entries, attested
// nodes, and join tokens for node attestation.

// entryOf turns an entry request into a store entry with id.
func entryOf(req wire.EntryRequest, id string) (store.Entry, error) {
	if req.SPIFFEID == "" {
		return store.Entry{}, newError(http.StatusBadRequest, "bad_request", "spiffe_id is required, e.g. \"spiffe://example.internal/web\"")
	}
	return store.Entry{
		ID:        id,
		SPIFFEID:  req.SPIFFEID,
		Parent:    req.Parent,
		Selectors: req.Selectors,
		X509TTL:   req.X509TTL.Std(),
		JWTTTL:    req.JWTTTL.Std(),
		DNSNames:  req.DNSNames,
		Hint:      req.Hint,
	}, nil
}

func entryBody(e store.Entry) wire.Entry {
	out := wire.Entry{
		ID:        e.ID,
		SPIFFEID:  e.SPIFFEID,
		Parent:    e.Parent,
		Selectors: e.Selectors,
		X509TTL:   policy.Duration(e.X509TTL),
		JWTTTL:    policy.Duration(e.JWTTTL),
		DNSNames:  e.DNSNames,
		Hint:      e.Hint,
		Revision:  e.Revision,
		CreatedAt: e.CreatedAt.UTC(),
		UpdatedAt: e.UpdatedAt.UTC(),
	}
	if out.Selectors == nil {
		out.Selectors = []string{}
	}
	if out.DNSNames == nil {
		out.DNSNames = []string{}
	}
	return out
}

func (s *Server) handleCreateEntry(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.EntryRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := entryOf(req, "")
	if err != nil {
		return err
	}
	if err := s.mayManageEntry(r, c, e); err != nil {
		return err
	}
	if e, err = s.registration.CreateEntry(r.Context(), e, c.actor()); err != nil {
		return err
	}
	s.notifyEntries()
	writeJSON(w, http.StatusCreated, entryBody(e))
	return nil
}

// defaultEntryPage is the page size of GET /v1/entries without a limit, as
// the store defines it.
const defaultEntryPage = 100

func (s *Server) handleListEntries(w http.ResponseWriter, r *http.Request, _ caller) error {
	q := r.URL.Query()
	f := store.EntryFilter{SPIFFEID: q.Get("spiffe_id"), Parent: q.Get("parent"), After: q.Get("after"), Limit: defaultEntryPage}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return newError(http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	entries, err := s.st.ListEntries(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.EntryPage{Entries: make([]wire.Entry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, entryBody(e))
	}
	if len(entries) == f.Limit {
		// A full page: there may be more after its last entry.
		out.Next = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleGetEntry(w http.ResponseWriter, r *http.Request, _ caller) error {
	id := r.PathValue("id")
	e, err := s.st.GetEntry(r.Context(), id)
	if err != nil {
		if isNotFound(err) {
			return newError(http.StatusNotFound, "not_found", fmt.Sprintf("no entry %s", id))
		}
		return err
	}
	writeJSON(w, http.StatusOK, entryBody(e))
	return nil
}

func (s *Server) handleUpdateEntry(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.EntryRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := entryOf(req, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.mayManageEntry(r, c, e); err != nil {
		return err
	}
	if old, gerr := s.st.GetEntry(r.Context(), e.ID); gerr == nil {
		if err := s.mayManageEntry(r, c, old); err != nil {
			return err
		}
	}
	if e, err = s.registration.UpdateEntry(r.Context(), e, c.actor()); err != nil {
		return err
	}
	s.notifyEntries()
	writeJSON(w, http.StatusOK, entryBody(e))
	return nil
}

func (s *Server) handleDeleteEntry(w http.ResponseWriter, r *http.Request, c caller) error {
	if old, err := s.st.GetEntry(r.Context(), r.PathValue("id")); err == nil {
		if err := s.mayManageEntry(r, c, old); err != nil {
			return err
		}
	}
	if err := s.registration.DeleteEntry(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	s.notifyEntries()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleListNodes(w http.ResponseWriter, r *http.Request, _ caller) error {
	nodes, err := s.registration.ListNodes(r.Context())
	if err != nil {
		return err
	}
	out := wire.NodeList{Nodes: make([]wire.Node, 0, len(nodes))}
	for _, n := range nodes {
		nr := wire.Node{SPIFFEID: n.SPIFFEID, Attestation: n.Attestation, Selectors: n.Selectors, CertSerial: n.CertSerial,
			Evicted: n.Evicted, CreatedAt: n.CreatedAt.UTC(), UpdatedAt: n.UpdatedAt.UTC()}
		if nr.Selectors == nil {
			nr.Selectors = []string{}
		}
		out.Nodes = append(out.Nodes, nr)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleEvictNode(w http.ResponseWriter, r *http.Request, c caller) error {
	var req wire.EvictRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.SPIFFEID == "" {
		return newError(http.StatusBadRequest, "bad_request", "spiffe_id is required: the SPIFFE ID of the node to evict")
	}
	if err := s.registration.EvictNode(r.Context(), req.SPIFFEID, c.actor()); err != nil {
		return err
	}
	if s.nodeEvicted != nil {
		s.nodeEvicted(req.SPIFFEID)
	}
	writeJSON(w, http.StatusOK, wire.EvictResponse{Evicted: req.SPIFFEID})
	return nil
}

// createJoinToken serves POST /v1/tokens with "join": true: a node join
// token for spiffe_id (handleCreateToken decoded the body).
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request, c caller, req wire.TokenRequest) error {
	if req.Subject != "" || len(req.SANs) > 0 || req.Provisioner != "" {
		return newError(http.StatusBadRequest, "bad_request", "a join token names only spiffe_id (and ttl): subject, sans and provisioner belong to certificate tokens")
	}
	if req.SPIFFEID == "" {
		return newError(http.StatusBadRequest, "bad_request", "a join token needs spiffe_id: the node's SPIFFE ID, e.g. \"spiffe://example.internal/node/n1\"")
	}
	g, err := s.registration.CreateJoinToken(r.Context(), req.SPIFFEID, req.TTL.Std(), c.actor())
	if err != nil {
		return err
	}
	s.metrics.tokens.Inc()
	writeTokenResponse(w, ca.TokenGrant{Token: g.Token, ID: g.ID, ExpiresAt: g.ExpiresAt})
	return nil
}

// notifyEntries tells the node API that entries changed here, so connected
// agents hear of it before the next poll.
func (s *Server) notifyEntries() {
	if s.entriesChanged != nil {
		s.entriesChanged()
	}
}

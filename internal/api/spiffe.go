package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
)

// SPIFFE registration endpoints (admin): registration entries, attested
// nodes, and join tokens for node attestation.

// entryRequest is the body of POST /v1/entries and PUT /v1/entries/{id}.
type entryRequest struct {
	SPIFFEID  string   `json:"spiffe_id"`
	Parent    string   `json:"parent"`
	Selectors []string `json:"selectors"`
	X509TTL   duration `json:"x509_ttl,omitempty"`
	JWTTTL    duration `json:"jwt_ttl,omitempty"`
	DNSNames  []string `json:"dns_names,omitempty"`
	Hint      string   `json:"hint,omitempty"`
}

// entry turns the request into a store entry with id.
func (req entryRequest) entry(id string) (store.Entry, error) {
	x509TTL, err := req.X509TTL.parse("x509_ttl")
	if err != nil {
		return store.Entry{}, err
	}
	jwtTTL, err := req.JWTTTL.parse("jwt_ttl")
	if err != nil {
		return store.Entry{}, err
	}
	if req.SPIFFEID == "" {
		return store.Entry{}, newError(http.StatusBadRequest, "bad_request", "spiffe_id is required, e.g. \"spiffe://example.internal/web\"")
	}
	return store.Entry{
		ID:        id,
		SPIFFEID:  req.SPIFFEID,
		Parent:    req.Parent,
		Selectors: req.Selectors,
		X509TTL:   x509TTL,
		JWTTTL:    jwtTTL,
		DNSNames:  req.DNSNames,
		Hint:      req.Hint,
	}, nil
}

// entryResponse is the JSON shape of a registration entry.
type entryResponse struct {
	ID        string    `json:"id"`
	SPIFFEID  string    `json:"spiffe_id"`
	Parent    string    `json:"parent"`
	Selectors []string  `json:"selectors"`
	X509TTL   string    `json:"x509_ttl"`
	JWTTTL    string    `json:"jwt_ttl"`
	DNSNames  []string  `json:"dns_names"`
	Hint      string    `json:"hint"`
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func entryBody(e store.Entry) entryResponse {
	out := entryResponse{
		ID:        e.ID,
		SPIFFEID:  e.SPIFFEID,
		Parent:    e.Parent,
		Selectors: e.Selectors,
		X509TTL:   e.X509TTL.String(),
		JWTTTL:    e.JWTTTL.String(),
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
	var req entryRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := req.entry("")
	if err != nil {
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
	out := struct {
		Entries []entryResponse `json:"entries"`
		Next    string          `json:"next"`
	}{Entries: make([]entryResponse, 0, len(entries))}
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
	var req entryRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := req.entry(r.PathValue("id"))
	if err != nil {
		return err
	}
	if e, err = s.registration.UpdateEntry(r.Context(), e, c.actor()); err != nil {
		return err
	}
	s.notifyEntries()
	writeJSON(w, http.StatusOK, entryBody(e))
	return nil
}

func (s *Server) handleDeleteEntry(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.registration.DeleteEntry(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	s.notifyEntries()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// nodeResponse is the JSON shape of an attested node.
type nodeResponse struct {
	SPIFFEID    string    `json:"spiffe_id"`
	Attestation string    `json:"attestation"`
	Selectors   []string  `json:"selectors"`
	CertSerial  string    `json:"cert_serial"`
	Evicted     bool      `json:"evicted"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func (s *Server) handleListNodes(w http.ResponseWriter, r *http.Request, _ caller) error {
	nodes, err := s.registration.ListNodes(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Nodes []nodeResponse `json:"nodes"`
	}{Nodes: make([]nodeResponse, 0, len(nodes))}
	for _, n := range nodes {
		nr := nodeResponse{SPIFFEID: n.SPIFFEID, Attestation: n.Attestation, Selectors: n.Selectors, CertSerial: n.CertSerial,
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
	var req struct {
		SPIFFEID string `json:"spiffe_id"`
	}
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
	writeJSON(w, http.StatusOK, struct {
		Evicted string `json:"evicted"`
	}{req.SPIFFEID})
	return nil
}

// createJoinToken serves POST /v1/tokens with "join": true: a node join
// token for spiffe_id (handleCreateToken decoded the body).
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request, c caller, req tokenRequest) error {
	if req.Subject != "" || len(req.SANs) > 0 || req.Provisioner != "" {
		return newError(http.StatusBadRequest, "bad_request", "a join token names only spiffe_id (and ttl): subject, sans and provisioner belong to certificate tokens")
	}
	if req.SPIFFEID == "" {
		return newError(http.StatusBadRequest, "bad_request", "a join token needs spiffe_id: the node's SPIFFE ID, e.g. \"spiffe://example.internal/node/n1\"")
	}
	ttl, err := req.TTL.parse("ttl")
	if err != nil {
		return err
	}
	g, err := s.registration.CreateJoinToken(r.Context(), req.SPIFFEID, ttl, c.actor())
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

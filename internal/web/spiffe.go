package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/store"
)

// spiffeRows bounds the entries the SPIFFE page lists at once.
const spiffeRows = 200

// nodeView is an agent as the SPIFFE page shows it: when it last renewed
// its node SVID, and its outage budget — how long it may stay away from
// the server before that SVID expires.
type nodeView struct {
	store.Node
	Budget  time.Duration
	Expired bool
}

// spiffePage lists registration entries (a page, by ID) and agents.
func (s *Server) spiffePage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx := r.Context()
	entries, err := s.cfg.Store.ListEntries(ctx, store.EntryFilter{After: r.URL.Query().Get("after"), Limit: spiffeRows + 1})
	var nodes []store.Node
	if err == nil {
		nodes, err = s.cfg.Store.ListNodes(ctx)
	}
	if err != nil {
		s.readFailed(w, "spiffe", "The entries and agents", err)
		return
	}
	data := map[string]any{}
	if len(entries) > spiffeRows {
		entries = entries[:spiffeRows]
		data["Next"] = "/ui/spiffe?after=" + entries[len(entries)-1].ID
	}
	now := s.cfg.Clock()
	views := make([]nodeView, 0, len(nodes))
	for _, n := range nodes {
		v := nodeView{Node: n}
		if c, err := s.cfg.Store.GetCertificate(ctx, n.CertSerial); err == nil {
			v.Budget = c.NotAfter.Sub(now).Round(time.Minute)
			v.Expired = v.Budget <= 0
		}
		views = append(views, v)
	}
	data["Entries"], data["Nodes"] = entries, views
	s.render(w, http.StatusOK, "spiffe", data, sess)
}

// auditRows is how many of the latest audit records the audit page shows.
const auditRows = 100

// auditPage shows the latest audit records, newest first, and with
// ?verify=1 the outcome of verifying the whole chain (and its signed
// checkpoints, with the server's key), as `meshpki audit verify` does.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx := r.Context()
	head, _, err := s.cfg.Store.AuditHead(ctx)
	var events []audit.Event
	if err == nil {
		events, err = s.cfg.Store.ListAudit(ctx, max(head-auditRows, 0), auditRows)
	}
	if err != nil {
		s.readFailed(w, "audit", "The audit log", err)
		return
	}
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	data := map[string]any{"Events": events, "Head": head}
	if r.URL.Query().Get("verify") == "1" {
		rep, err := audit.VerifyWith(ctx, s.cfg.Store, audit.VerifyOptions{CheckpointKey: s.cfg.CheckpointKey}, nil)
		switch {
		case err != nil && !errors.Is(err, ctx.Err()):
			data["VerifyError"] = ca.Clip(err.Error())
		case err == nil:
			data["Report"] = rep
		}
	}
	s.render(w, http.StatusOK, "audit", data, sess)
}

package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/meshpki/meshpki/internal/api"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/provisioner"
	"github.com/meshpki/meshpki/internal/store"
)

// alertRows bounds each list of the alerts page.
const alertRows = 100

// alertsPage shows the alerts firing, the latest resolved, and the
// channels, each with a button that sends a test notification.
func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx := r.Context()
	firing, _, err1 := s.cfg.Store.ListAlerts(ctx, store.AlertFilter{State: store.AlertFiring, Limit: alertRows})
	resolved, _, err2 := s.cfg.Store.ListAlerts(ctx, store.AlertFilter{State: store.AlertResolved, Limit: alertRows})
	channels, err3 := s.cfg.Store.ListChannels(ctx)
	if err := errors.Join(err1, err2, err3); err != nil {
		s.readFailed(w, "alerts", "The alerts", err)
		return
	}
	type channelView struct {
		store.AlertChannel
		Settings string
	}
	views := make([]channelView, 0, len(channels))
	for _, c := range channels {
		views = append(views, channelView{AlertChannel: c, Settings: string(c.Public)})
	}
	s.render(w, http.StatusOK, "alerts", map[string]any{"Firing": firing, "Resolved": resolved, "Channels": views, "Tested": r.URL.Query().Get("tested")}, sess)
}

// testChannel sends a test notification through one channel.
func (s *Server) testChannel(w http.ResponseWriter, r *http.Request, sess session) {
	if s.cfg.Alerts == nil {
		s.message(w, http.StatusNotFound, "Not found", "Alerting is not configured.")
		return
	}
	name := r.PathValue("name")
	if err := s.cfg.Alerts.Test(r.Context(), name); err != nil {
		s.message(w, api.StatusOf(err), "Test not delivered", err.Error())
		return
	}
	s.cfg.Logger.Info("web: channel tested", "channel", ca.Clip(name), "admin", sess.Admin)
	http.Redirect(w, r, "/ui/alerts?tested="+name, http.StatusSeeOther)
}

// provisionersPage lists the provisioners with their policies, read-only,
// and answers the dry-run box: would these names be allowed?
func (s *Server) provisionersPage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx := r.Context()
	list, err := s.cfg.Store.ListProvisioners(ctx)
	if err != nil {
		s.readFailed(w, "provisioners", "The provisioners", err)
		return
	}
	type provView struct {
		store.Provisioner
		PolicyJSON string
	}
	views := make([]provView, 0, len(list))
	for _, p := range list {
		b, _ := json.MarshalIndent(p.Policy, "", "  ")
		views = append(views, provView{Provisioner: p, PolicyJSON: string(b)})
	}
	data := map[string]any{"Provisioners": views}
	q := r.URL.Query()
	if prov, names := q.Get("provisioner"), strings.TrimSpace(q.Get("names")); prov != "" || names != "" {
		data["CheckProvisioner"], data["CheckNames"] = prov, names
		if s.cfg.Provisioners == nil {
			data["CheckError"] = "policy checks are not configured"
		} else {
			d, err := s.cfg.Provisioners.CheckPolicy(ctx, provisioner.CheckRequest{Provisioner: ca.Clip(prov), SANs: strings.Fields(strings.ReplaceAll(names, ",", " "))})
			if err != nil {
				data["CheckError"] = err.Error()
			} else {
				data["Decision"] = d
			}
		}
	}
	s.render(w, http.StatusOK, "provisioners", data, sess)
}

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/notify"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

func (s *Server) alertsChangedNow() {
	if s.alertsChanged != nil {
		s.alertsChanged()
	}
}

func channelBody(c store.AlertChannel) wire.AlertChannel {
	var pub notify.Public
	_ = json.Unmarshal(c.Public, &pub) // written by notify; a field it lacks shows empty
	return wire.AlertChannel{Name: c.Name, Kind: c.Kind, Default: c.Default, Endpoint: pub.Endpoint, From: pub.From, To: pub.To,
		Username: pub.Username, CreatedAt: c.CreatedAt}
}

func (s *Server) handleListChannels(w http.ResponseWriter, r *http.Request, _ caller) error {
	list, err := s.alerts.Store.ListChannels(r.Context())
	if err != nil {
		return err
	}
	out := wire.AlertChannelList{Channels: make([]wire.AlertChannel, 0, len(list))}
	for _, c := range list {
		out.Channels = append(out.Channels, channelBody(c))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAddChannel(w http.ResponseWriter, r *http.Request, c caller) error {
	var body wire.AlertChannelRequest
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	ch, err := s.alerts.AddChannel(r.Context(), c.actor(), body.Name, body.Kind, body.Default, notify.Config{
		URL: body.URL, SMTP: body.SMTP, From: body.From, To: body.To, Username: body.Username, Password: body.Password, RootPEM: body.RootPEM})
	if err != nil {
		return err
	}
	s.alertsChangedNow()
	writeJSON(w, http.StatusCreated, channelBody(ch))
	return nil
}

func (s *Server) handleRemoveChannel(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.alerts.RemoveChannel(r.Context(), c.actor(), r.PathValue("name")); err != nil {
		return err
	}
	s.alertsChangedNow()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleTestChannel(w http.ResponseWriter, r *http.Request, _ caller) error {
	name := r.PathValue("name")
	if err := s.alerts.Test(r.Context(), name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"delivered": name})
	return nil
}

func ruleBody(r store.AlertRule) wire.AlertRule {
	spec, _ := notify.ParseRule(r) // written by notify
	return wire.AlertRule{Name: r.Name, Channel: r.Channel, Names: spec.Names, Source: spec.Source, Issuers: spec.Issuers, Labels: spec.Labels,
		Checks: spec.Checks, Within: spec.Within, MinSeverity: spec.MinSeverity, Repeat: spec.Repeat, CreatedAt: r.CreatedAt}
}

func (s *Server) handleListRules(w http.ResponseWriter, r *http.Request, _ caller) error {
	list, err := s.alerts.Store.ListRules(r.Context())
	if err != nil {
		return err
	}
	out := wire.AlertRuleList{Rules: make([]wire.AlertRule, 0, len(list))}
	for _, rule := range list {
		out.Rules = append(out.Rules, ruleBody(rule))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAddRule(w http.ResponseWriter, r *http.Request, c caller) error {
	var body wire.AlertRule
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	rule, err := s.alerts.AddRule(r.Context(), c.actor(), body.Name, body.Channel, notify.RuleSpec{Names: body.Names, Source: body.Source, Labels: body.Labels,
		Issuers: body.Issuers, Checks: body.Checks, Within: body.Within, MinSeverity: body.MinSeverity, Repeat: body.Repeat})
	if err != nil {
		return err
	}
	s.alertsChangedNow()
	writeJSON(w, http.StatusCreated, ruleBody(rule))
	return nil
}

func (s *Server) handleRemoveRule(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.alerts.RemoveRule(r.Context(), c.actor(), r.PathValue("name")); err != nil {
		return err
	}
	s.alertsChangedNow()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleListAlerts(w http.ResponseWriter, r *http.Request, _ caller) error {
	q := r.URL.Query()
	f := store.AlertFilter{State: q.Get("state"), After: q.Get("after")}
	switch f.State {
	case "", store.AlertFiring, store.AlertResolved:
	default:
		return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("state %q must be firing or resolved", ca.Clip(f.State)))
	}
	var err error
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	alerts, next, err := s.alerts.Store.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.AlertList{Alerts: make([]wire.Alert, 0, len(alerts)), Next: next}
	for _, a := range alerts {
		labels := map[string]string{}
		_ = json.Unmarshal(a.Labels, &labels) // written by notify
		out.Alerts = append(out.Alerts, wire.Alert{Key: a.Key, State: a.State, Rule: a.Rule, Channel: a.Channel, Certificate: a.Certificate,
			Check: a.Check, Threshold: a.Threshold, Severity: a.Severity, Summary: a.Summary, Labels: labels, FiredAt: a.FiredAt,
			LastNotified: a.LastNotified, ResolvedAt: a.ResolvedAt})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleListNotifications(w http.ResponseWriter, r *http.Request, _ caller) error {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return newError(http.StatusBadRequest, "bad_request", "limit must be a number from 1 to 1000")
		}
		limit = n
	}
	list, err := s.alerts.Store.ListNotifications(r.Context(), limit)
	if err != nil {
		return err
	}
	out := wire.NotificationList{Notifications: make([]wire.Notification, 0, len(list))}
	for _, n := range list {
		wn := wire.Notification{ID: n.ID, Channel: n.Channel, Status: n.Status, Alerts: n.Alerts, Attempts: n.Attempts, CreatedAt: n.CreatedAt,
			DeliveredAt: n.DeliveredAt, FailedAt: n.FailedAt, LastError: n.LastError}
		if n.DeliveredAt.IsZero() && n.FailedAt.IsZero() {
			wn.NextAttempt = n.NextAttempt
		}
		out.Notifications = append(out.Notifications, wn)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

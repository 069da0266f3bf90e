package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/store"
)

// Service changes channels and rules, each change with its audit record,
// and sends test messages.
type Service struct {
	Store  store.Alerts
	Sealer *keys.Sealer
	Sender *Sender
	Clock  func() time.Time
}

func (s *Service) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

// checkName is monitor.CheckName as a bad request.
func checkName(what, name string) error {
	if err := monitor.CheckName(what, name); err != nil {
		return ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	return nil
}

// AddChannel checks, seals and stores a channel.
func (s *Service) AddChannel(ctx context.Context, actor, name, kind string, isDefault bool, cfg Config) (store.AlertChannel, error) {
	if err := checkName("channel", name); err != nil {
		return store.AlertChannel{}, err
	}
	if err := cfg.Check(kind); err != nil {
		return store.AlertChannel{}, ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	plain, err := encodeConfig(cfg)
	if err != nil {
		return store.AlertChannel{}, err
	}
	sealed, err := s.Sealer.Seal("alert-channel:"+name, plain)
	if err != nil {
		return store.AlertChannel{}, err
	}
	public, err := json.Marshal(cfg.Public(kind))
	if err != nil {
		return store.AlertChannel{}, err
	}
	now := s.now()
	ch := store.AlertChannel{Name: name, Kind: kind, Default: isDefault, Public: public, Sealed: sealed, CreatedAt: now}
	ev := audit.Event{Time: now, Type: audit.TypeChannelAdded, Actor: actor, Subject: name, Outcome: "success",
		Detail: map[string]string{"kind": kind, "endpoint": ca.Clip(cfg.Public(kind).Endpoint), "default": fmt.Sprint(isDefault)}}
	if err := s.Store.CreateChannel(ctx, ch, ev); errors.Is(err, store.ErrConflict) {
		return ch, ca.Errorf(ca.KindConflict, "a channel named %q exists", name)
	} else if err != nil {
		return ch, err
	}
	return ch, nil
}

// RemoveChannel removes a channel no rule uses.
func (s *Service) RemoveChannel(ctx context.Context, actor, name string) error {
	ev := audit.Event{Time: s.now(), Type: audit.TypeChannelRemoved, Actor: actor, Subject: ca.Clip(name), Outcome: "success"}
	err := s.Store.DeleteChannel(ctx, name, ev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ca.Errorf(ca.KindNotFound, "no channel named %q", ca.Clip(name))
	case errors.Is(err, store.ErrConflict):
		return ca.Errorf(ca.KindConflict, "channel %q is used by rules; remove them first", ca.Clip(name))
	}
	return err
}

// AddRule checks and stores a rule.
func (s *Service) AddRule(ctx context.Context, actor, name, channel string, spec RuleSpec) (store.AlertRule, error) {
	if err := checkName("rule", name); err != nil {
		return store.AlertRule{}, err
	}
	if name == builtinRule {
		return store.AlertRule{}, ca.Errorf(ca.KindBadRequest, "the rule name %q is reserved for the built-in rule", builtinRule)
	}
	if err := spec.Check(); err != nil {
		return store.AlertRule{}, ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return store.AlertRule{}, err
	}
	now := s.now()
	r := store.AlertRule{Name: name, Channel: channel, Spec: raw, CreatedAt: now}
	ev := audit.Event{Time: now, Type: audit.TypeRuleAdded, Actor: actor, Subject: name, Outcome: "success",
		Detail: map[string]string{"channel": ca.Clip(channel), "spec": ca.Clip(string(raw))}}
	err = s.Store.CreateRule(ctx, r, ev)
	switch {
	case errors.Is(err, store.ErrConflict):
		return r, ca.Errorf(ca.KindConflict, "a rule named %q exists", name)
	case errors.Is(err, store.ErrNotFound):
		return r, ca.Errorf(ca.KindNotFound, "no channel named %q", ca.Clip(channel))
	}
	return r, err
}

// RemoveRule removes a rule; its firing alerts resolve at the next
// evaluation.
func (s *Service) RemoveRule(ctx context.Context, actor, name string) error {
	ev := audit.Event{Time: s.now(), Type: audit.TypeRuleRemoved, Actor: actor, Subject: ca.Clip(name), Outcome: "success"}
	if err := s.Store.DeleteRule(ctx, name, ev); errors.Is(err, store.ErrNotFound) {
		return ca.Errorf(ca.KindNotFound, "no rule named %q", ca.Clip(name))
	} else if err != nil {
		return err
	}
	return nil
}

// Test sends a test message to a channel now and returns the error of the
// attempt; nothing is queued or retried.
func (s *Service) Test(ctx context.Context, name string) error {
	ch, err := s.Store.GetChannel(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return ca.Errorf(ca.KindNotFound, "no channel named %q", ca.Clip(name))
	}
	if err != nil {
		return err
	}
	cfg, err := OpenConfig(s.Sealer, ch)
	if err != nil {
		return err
	}
	now := s.now()
	m := Message{Status: store.AlertFiring, Test: true, Alerts: []AlertView{{
		Key: "test", Status: store.AlertFiring, Rule: "test", Check: "test", Severity: "info",
		Summary: "meshpki test alert: this channel works", Certificate: "test", Labels: map[string]string{}, StartsAt: now}}}
	if err := s.Sender.Send(ctx, ch.Name, ch.Kind, cfg, m); err != nil {
		return ca.Errorf(ca.KindBadRequest, "channel %s: %v", name, ca.Clip(err.Error()))
	}
	return nil
}

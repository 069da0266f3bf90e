package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/meshpki/meshpki/internal/wire"
)

// Alerting's bodies, declared in package wire.
type (
	AlertChannelRequest = wire.AlertChannelRequest
	AlertChannel        = wire.AlertChannel
	AlertRule           = wire.AlertRule
	Alert               = wire.Alert
	AlertList           = wire.AlertList
	Notification        = wire.Notification
)

// AddChannel adds an alert channel (admin).
func (c *Client) AddChannel(ctx context.Context, req AlertChannelRequest) (*AlertChannel, error) {
	var out AlertChannel
	if err := c.do(ctx, http.MethodPost, "/v1/alerts/channels", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListChannels returns the alert channels (admin).
func (c *Client) ListChannels(ctx context.Context) ([]AlertChannel, error) {
	var out wire.AlertChannelList
	if err := c.do(ctx, http.MethodGet, "/v1/alerts/channels", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Channels, nil
}

// RemoveChannel removes an alert channel no rule uses (admin).
func (c *Client) RemoveChannel(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/alerts/channels/"+url.PathEscape(name), nil, nil, nil)
}

// TestChannel has the server send a test alert to a channel now (admin).
func (c *Client) TestChannel(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/alerts/channels/"+url.PathEscape(name)+"/test", nil, struct{}{}, nil)
}

// AddRule adds an alert rule (admin).
func (c *Client) AddRule(ctx context.Context, r AlertRule) (*AlertRule, error) {
	var out AlertRule
	if err := c.do(ctx, http.MethodPost, "/v1/alerts/rules", nil, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListRules returns the alert rules (admin).
func (c *Client) ListRules(ctx context.Context) ([]AlertRule, error) {
	var out wire.AlertRuleList
	if err := c.do(ctx, http.MethodGet, "/v1/alerts/rules", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Rules, nil
}

// RemoveRule removes an alert rule (admin).
func (c *Client) RemoveRule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/alerts/rules/"+url.PathEscape(name), nil, nil, nil)
}

// ListAlerts returns one page of alerts, firing or resolved ("" for both)
// (admin).
func (c *Client) ListAlerts(ctx context.Context, state, after string, limit int) (*AlertList, error) {
	values := url.Values{}
	if state != "" {
		values.Set("state", state)
	}
	if after != "" {
		values.Set("after", after)
	}
	if limit > 0 {
		values.Set("limit", strconv.Itoa(limit))
	}
	var out AlertList
	if err := c.do(ctx, http.MethodGet, "/v1/alerts", values, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListNotifications returns the latest alert notifications, newest first
// (admin).
func (c *Client) ListNotifications(ctx context.Context, limit int) ([]Notification, error) {
	values := url.Values{"limit": {strconv.Itoa(max(limit, 1))}}
	var out wire.NotificationList
	if err := c.do(ctx, http.MethodGet, "/v1/alerts/notifications", values, nil, &out); err != nil {
		return nil, err
	}
	return out.Notifications, nil
}

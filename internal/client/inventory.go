package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/wire"
)

// The inventory's bodies, declared in package wire.
type (
	InventoryItem  = wire.InventoryItem
	InventoryPage  = wire.InventoryPage
	ScanReport     = wire.ScanReport
	ReportedResult = wire.ReportedResult
	ScanSchedule   = wire.ScanSchedule
	Finding        = wire.Finding
)

// InventoryQuery selects inventory items. Zero fields select everything.
type InventoryQuery struct {
	Source string // "issued" or "scanned"
	Name   string // exact subject common name or SAN
	// ExpiringWithin selects certificates that expire within this duration
	// of the server's clock.
	ExpiringWithin time.Duration
	Active         bool   // only certificates in service (see docs/SCAN.md)
	Limit          int    // page size; 0 means the server's default (100)
	After          string // the Next of the previous page
}

// ListInventory returns one page of the inventory, soonest expiry first
// (admin).
func (c *Client) ListInventory(ctx context.Context, q InventoryQuery) (*InventoryPage, error) {
	values := url.Values{}
	set := func(k, v string) {
		if v != "" {
			values.Set(k, v)
		}
	}
	set("source", q.Source)
	set("name", q.Name)
	set("after", q.After)
	if q.ExpiringWithin != 0 {
		values.Set("expiring_before", q.ExpiringWithin.String())
	}
	if q.Active {
		values.Set("active", "true")
	}
	if q.Limit > 0 {
		values.Set("limit", strconv.Itoa(q.Limit))
	}
	var page InventoryPage
	if err := c.do(ctx, http.MethodGet, "/v1/inventory", values, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// GetScanned returns a scanned certificate by its SHA-256 fingerprint, with
// its chain and where it was seen (admin).
func (c *Client) GetScanned(ctx context.Context, fingerprint string) (*InventoryItem, error) {
	if fingerprint == "" {
		return nil, errors.New("client: empty fingerprint")
	}
	var it InventoryItem
	if err := c.do(ctx, http.MethodGet, "/v1/inventory/"+url.PathEscape(fingerprint), nil, nil, &it); err != nil {
		return nil, err
	}
	return &it, nil
}

// Report sends what a scan saw to the server's inventory and returns how
// many chains it recorded (admin).
func (c *Client) Report(ctx context.Context, r ScanReport) (int, error) {
	var out wire.ScanReportResult
	if err := c.do(ctx, http.MethodPost, "/v1/inventory/reports", nil, r, &out); err != nil {
		return 0, err
	}
	return out.Recorded, nil
}

// ListSchedules returns the server's scan schedules (admin).
func (c *Client) ListSchedules(ctx context.Context) ([]ScanSchedule, error) {
	var out wire.ScanScheduleList
	if err := c.do(ctx, http.MethodGet, "/v1/scan/schedules", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Schedules, nil
}

// AddSchedule adds a scan schedule; its first run starts at once (admin).
func (c *Client) AddSchedule(ctx context.Context, sc ScanSchedule) (*ScanSchedule, error) {
	var out ScanSchedule
	if err := c.do(ctx, http.MethodPost, "/v1/scan/schedules", nil, sc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RunSchedule has the server run a scan schedule now (admin).
func (c *Client) RunSchedule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/scan/schedules/"+url.PathEscape(name)+"/run", nil, struct{}{}, nil)
}

// RemoveSchedule removes a scan schedule (admin).
func (c *Client) RemoveSchedule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/scan/schedules/"+url.PathEscape(name), nil, nil, nil)
}

package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// The operator and audit bodies of the API.
type (
	OperatorRequest    = wire.OperatorRequest
	Operator           = wire.Operator
	OperatorCredential = wire.OperatorCredential
	AuditEvent         = wire.AuditEvent
)

// ListOperators lists every operator, retired ones included (admins and
// auditors).
func (c *Client) ListOperators(ctx context.Context) ([]Operator, error) {
	var list wire.OperatorList
	if err := c.do(ctx, http.MethodGet, "/v1/admins", nil, nil, &list); err != nil {
		return nil, err
	}
	return list.Operators, nil
}

// AddOperator adds an operator and returns its first credential.
func (c *Client) AddOperator(ctx context.Context, req OperatorRequest) (*OperatorCredential, error) {
	var out OperatorCredential
	if err := c.do(ctx, http.MethodPost, "/v1/admins", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// IssueOperatorCredential issues an active operator a new credential for
// the key of req.CSR.
func (c *Client) IssueOperatorCredential(ctx context.Context, name string, req OperatorRequest) (*OperatorCredential, error) {
	if name == "" {
		return nil, errors.New("client: empty operator name")
	}
	var out OperatorCredential
	if err := c.do(ctx, http.MethodPost, "/v1/admins/"+url.PathEscape(name)+"/credential", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetireOperator retires an operator and returns the serials of its
// certificates, revoked with it.
func (c *Client) RetireOperator(ctx context.Context, name string) ([]store.Serial, error) {
	if name == "" {
		return nil, errors.New("client: empty operator name")
	}
	var out wire.RevokedSet
	if err := c.do(ctx, http.MethodDelete, "/v1/admins/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Revoked, nil
}

// ListAudit returns up to limit audit records after sequence number after
// (auditors and admins).
func (c *Client) ListAudit(ctx context.Context, after int64, limit int) ([]AuditEvent, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	var page wire.AuditPage
	if err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &page); err != nil {
		return nil, err
	}
	return page.Events, nil
}

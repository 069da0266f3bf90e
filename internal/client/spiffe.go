package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/wire"
)

// EntryQuery selects entries for ListEntries. Zero fields select everything.
type EntryQuery struct {
	SPIFFEID string // exact SPIFFE ID
	Parent   string // exact parent
	Limit    int    // page size; 0 means the server's default (100)
	After    string // the Next of the previous page
}

// JoinTokenRequest asks for a one-time token with which one node attests as
// SPIFFEID.
type JoinTokenRequest struct {
	// SPIFFEID is the node's SPIFFE ID, e.g.
	// "spiffe://example.internal/node/n1".
	SPIFFEID string
	// TTL is the token's lifetime; zero means the server's default (1h).
	TTL time.Duration
}

// CreateEntry creates a registration entry (admin). It fails with code
// "conflict" if an entry with the same SPIFFE ID, parent and selectors
// exists, and "forbidden" if no spiffe provisioner's policy allows it.
func (c *Client) CreateEntry(ctx context.Context, req EntryRequest) (*Entry, error) {
	var e Entry
	if err := c.do(ctx, http.MethodPost, "/v1/entries", nil, req, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListEntries returns one page of the entries q selects (admin).
func (c *Client) ListEntries(ctx context.Context, q EntryQuery) (*EntryPage, error) {
	values := url.Values{}
	if q.SPIFFEID != "" {
		values.Set("spiffe_id", q.SPIFFEID)
	}
	if q.Parent != "" {
		values.Set("parent", q.Parent)
	}
	if q.Limit > 0 {
		values.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		values.Set("after", q.After)
	}
	var page EntryPage
	if err := c.do(ctx, http.MethodGet, "/v1/entries", values, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// GetEntry returns one registration entry (admin).
func (c *Client) GetEntry(ctx context.Context, id string) (*Entry, error) {
	if id == "" {
		return nil, errors.New("client: empty entry id")
	}
	var e Entry
	if err := c.do(ctx, http.MethodGet, "/v1/entries/"+url.PathEscape(id), nil, nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEntry replaces the whole of entry id with req (admin).
func (c *Client) UpdateEntry(ctx context.Context, id string, req EntryRequest) (*Entry, error) {
	if id == "" {
		return nil, errors.New("client: empty entry id")
	}
	var e Entry
	if err := c.do(ctx, http.MethodPut, "/v1/entries/"+url.PathEscape(id), nil, req, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// DeleteEntry deletes a registration entry (admin).
func (c *Client) DeleteEntry(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("client: empty entry id")
	}
	return c.do(ctx, http.MethodDelete, "/v1/entries/"+url.PathEscape(id), nil, nil, nil)
}

// ListNodes returns every attested node, evicted ones included (admin).
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var list wire.NodeList
	if err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil, &list); err != nil {
		return nil, err
	}
	return list.Nodes, nil
}

// EvictNode bans an attested node (admin): it can no longer sync or get
// SVIDs minted. It fails with code "not_found" if no such node attested.
func (c *Client) EvictNode(ctx context.Context, spiffeID string) error {
	if spiffeID == "" {
		return errors.New("client: empty node SPIFFE ID")
	}
	return c.do(ctx, http.MethodPost, "/v1/nodes/evict", nil, wire.EvictRequest{SPIFFEID: spiffeID}, nil)
}

// CreateJoinToken creates a one-time join token for node attestation
// (admin). Token.Provisioner is empty.
func (c *Client) CreateJoinToken(ctx context.Context, req JoinTokenRequest) (*Token, error) {
	body := wire.TokenRequest{Join: true, SPIFFEID: req.SPIFFEID, TTL: policy.Duration(req.TTL)}
	var tok Token
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &tok); err != nil {
		return nil, err
	}
	return &tok, nil
}

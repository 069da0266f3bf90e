package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meshpki/meshpki/internal/policy"
)

// EntryRequest is the body of CreateEntry and UpdateEntry: a SPIFFE
// registration entry as the admin describes it.
type EntryRequest struct {
	// SPIFFEID is the identity the matching workloads get, e.g.
	// "spiffe://example.internal/web".
	SPIFFEID string `json:"spiffe_id"`
	// Parent is the SPIFFE ID of the node the entry applies to, or a node
	// selector such as "x509pop:subject:cn:web-1".
	Parent string `json:"parent"`
	// Selectors are workload selectors, such as "unix:uid:1000"; a workload
	// must match all of them.
	Selectors []string `json:"selectors"`
	// X509TTL and JWTTTL are the SVID lifetimes; zero means the server's
	// defaults (1h and 5m).
	X509TTL  policy.Duration `json:"x509_ttl,omitempty"`
	JWTTTL   policy.Duration `json:"jwt_ttl,omitempty"`
	DNSNames []string        `json:"dns_names,omitempty"`
	Hint     string          `json:"hint,omitempty"`
}

// Entry is a registration entry as the server records it.
type Entry struct {
	ID        string          `json:"id"`
	SPIFFEID  string          `json:"spiffe_id"`
	Parent    string          `json:"parent"`
	Selectors []string        `json:"selectors"`
	X509TTL   policy.Duration `json:"x509_ttl"`
	JWTTTL    policy.Duration `json:"jwt_ttl"`
	DNSNames  []string        `json:"dns_names"`
	Hint      string          `json:"hint"`
	// Revision is the store-wide change number of the entry's last change.
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// EntryQuery selects entries for ListEntries. Zero fields select everything.
type EntryQuery struct {
	SPIFFEID string // exact SPIFFE ID
	Parent   string // exact parent
	Limit    int    // page size; 0 means the server's default (100)
	After    string // the Next of the previous page
}

// EntryPage is one page of ListEntries. Next is empty on the last page.
type EntryPage struct {
	Entries []Entry `json:"entries"`
	Next    string  `json:"next"`
}

// Node is an attested node (agent).
type Node struct {
	SPIFFEID string `json:"spiffe_id"`
	// Attestation is how the node proved itself: "join_token" or "x509pop".
	Attestation string   `json:"attestation"`
	Selectors   []string `json:"selectors"`
	// CertSerial is the serial of the node's current node SVID.
	CertSerial string    `json:"cert_serial"`
	Evicted    bool      `json:"evicted"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
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
	var list struct {
		Nodes []Node `json:"nodes"`
	}
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
	return c.do(ctx, http.MethodPost, "/v1/nodes/evict", nil, map[string]string{"spiffe_id": spiffeID}, nil)
}

// CreateJoinToken creates a one-time join token for node attestation
// (admin). Token.Provisioner is empty.
func (c *Client) CreateJoinToken(ctx context.Context, req JoinTokenRequest) (*Token, error) {
	body := struct {
		Join     bool            `json:"join"`
		SPIFFEID string          `json:"spiffe_id"`
		TTL      policy.Duration `json:"ttl,omitempty"`
	}{true, req.SPIFFEID, policy.Duration(req.TTL)}
	var tok Token
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &tok); err != nil {
		return nil, err
	}
	return &tok, nil
}

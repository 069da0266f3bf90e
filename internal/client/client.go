package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/wire"
)

// DefaultTimeout bounds a request when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Response bodies larger than this are refused: the largest legitimate one is
// a page of 1000 certificate records.
const maxResponseBytes = 32 << 20

// Config says which CA to talk to and how.
type Config struct {
	// URL is the CA's base URL, such as "https://ca.example.internal:8443".
	// It must use https; a trailing slash is ignored.
	URL string
	// RootsPEM holds the root certificates, PEM-encoded, that the server's
	// certificate must chain to. Only these are trusted: the system pool is
	// never consulted.
	RootsPEM []byte
	// Certificate, if set, is presented as the TLS client certificate: an
	// admin certificate, or the holder's certificate for Renew and Revoke. It
	// is presented whatever CAs the server says it accepts.
	Certificate *tls.Certificate
	// Timeout bounds each request, from dialling to reading the whole
	// response. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Client calls the meshpki API. It is safe for concurrent use and keeps
// connections alive between calls.
type Client struct {
	base *url.URL
	http *http.Client
}

// New returns a client for the CA described by cfg. It does not contact the
// server.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("client: no CA URL")
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: bad CA URL %q: %w", cfg.URL, err)
	}
	if base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("client: bad CA URL %q: want https://HOST[:PORT]", cfg.URL)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("client: bad CA URL %q: no user, query or fragment allowed", cfg.URL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.RootsPEM) {
		return nil, errors.New("client: no PEM root certificate to trust")
	}
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
	}
	if cfg.Certificate != nil {
		cert := cfg.Certificate
		// Present the certificate unconditionally: the default selection
		// drops it when the server's acceptable-CA list names only the root
		// and the chain in the file stops at the intermediate.
		tlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &Client{
		base: base,
		http: &http.Client{Transport: transport, Timeout: timeout},
	}, nil
}

// URL returns the CA's base URL.
func (c *Client) URL() string { return c.base.String() }

// Close releases idle connections. The client remains usable.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// APIError is an error reported by the server, decoded from
// {"error":{"code":"…","message":"…"}}. Callers branch on Code.
type APIError struct {
	Status  int    // HTTP status, such as 403
	Code    string // API error code, such as "forbidden"; empty if the body had none
	Message string // what the server said
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
	}
	return fmt.Sprintf("%s (%s, HTTP %d)", msg, e.Code, e.Status)
}

// ConnectError reports that the server could not be reached, or that it did
// not prove its identity with a certificate from the trusted roots.
type ConnectError struct {
	URL string // the CA's base URL
	Err error  // the cause
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("client: cannot reach %s: %s", e.URL, describeConnectError(e.Err))
}

func (e *ConnectError) Unwrap() error { return e.Err }

// describeConnectError says in one line why a request did not get an answer.
func describeConnectError(err error) string {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var netErr net.Error
	var msg string
	switch {
	case errors.As(err, &unknownAuthority):
		msg = "its certificate is not signed by the trusted root (wrong --root, or not a meshpki server?)"
	case errors.As(err, &hostname):
		msg = "its certificate is not valid for that host: " + hostname.Error()
	case errors.As(err, &invalid):
		msg = "its certificate is not valid: " + invalid.Error()
	case errors.Is(err, context.Canceled):
		msg = "request canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		msg = "no answer in time: " + err.Error()
	default:
		msg = err.Error()
	}
	return strings.Join(strings.Fields(msg), " ")
}

// do sends a request with in (if not nil) as its JSON body and decodes a 2xx
// JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	body, err := c.send(ctx, method, path, query, in, "application/json")
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("client: decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// send performs one request and returns the body of a 2xx answer.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any, accept string) ([]byte, error) {
	target := c.base.String() + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var reqBody io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reqBody)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "meshpki-client")
	resp, err := c.http.Do(req)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, &ConnectError{URL: c.base.String(), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeAPIError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, &ConnectError{URL: c.base.String(), Err: fmt.Errorf("reading the answer to %s %s: %w", method, path, err)}
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("client: answer to %s %s is over %d bytes", method, path, maxResponseBytes)
	}
	return data, nil
}

// decodeAPIError turns a non-2xx answer into an *APIError. A body that is not
// the API's error JSON (a proxy's HTML page, say) becomes the message, cut to
// its first line.
func decodeAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var envelope wire.Error
	if err := json.Unmarshal(data, &envelope); err == nil && (envelope.Error.Code != "" || envelope.Error.Message != "") {
		return &APIError{Status: resp.StatusCode, Code: envelope.Error.Code, Message: envelope.Error.Message}
	}
	msg := strings.TrimSpace(string(data))
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return &APIError{Status: resp.StatusCode, Message: msg}
}

// The request and response bodies of the API, declared once in package
// wire and used by the server too.
type (
	SignRequest           = wire.SignRequest
	RenewRequest          = wire.RenewRequest
	SignResponse          = wire.Issued
	RevokeRequest         = wire.RevokeRequest
	RevokeMatchingRequest = wire.RevokeMatchingRequest
	RevokedSet            = wire.RevokedSet
	Certificate           = wire.Certificate
	CertificatePage       = wire.CertificatePage
	TokenRequest          = wire.TokenRequest
	Token                 = wire.Token
	Provisioner           = wire.Provisioner
	EABKey                = wire.EABKey
	EABKeyInfo            = wire.EABKeyInfo
	PolicyCheckRequest    = wire.PolicyCheckRequest
	EntryRequest          = wire.EntryRequest
	Entry                 = wire.Entry
	EntryPage             = wire.EntryPage
	Node                  = wire.Node
)

// RevocationReasons lists the reason names the API accepts, in RFC 5280 order.
var RevocationReasons = revocation.Names(revocation.Accepted)

// CertificateQuery selects certificates for ListCertificates. Zero fields
// select everything.
type CertificateQuery struct {
	Name   string // exact subject or SAN
	Status string // "valid", "revoked" or "expired"
	// ExpiringBefore selects certificates that expire before this time.
	ExpiringBefore time.Time
	// ExpiringWithin selects certificates that expire within this duration
	// of the server's clock. Set at most one of ExpiringBefore and ExpiringWithin.
	ExpiringWithin time.Duration
	Limit          int    // page size; 0 means the server's default (100)
	After          string // the Next of the previous page
}

// CreateEABKey makes an external account binding key for an ACME
// provisioner (admin).
func (c *Client) CreateEABKey(ctx context.Context, provisioner string) (*EABKey, error) {
	var out EABKey
	if err := c.do(ctx, http.MethodPost, "/v1/acme/eab", nil, wire.EABKeyRequest{Provisioner: provisioner}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListEABKeys lists an ACME provisioner's external account binding keys
// (admin).
func (c *Client) ListEABKeys(ctx context.Context, provisioner string) ([]EABKeyInfo, error) {
	var out wire.EABKeyList
	if err := c.do(ctx, http.MethodGet, "/v1/acme/eab", url.Values{"provisioner": {provisioner}}, nil, &out); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// Sign asks for a certificate for a CSR, authorised by a one-time token.
func (c *Client) Sign(ctx context.Context, req SignRequest) (*SignResponse, error) {
	var resp SignResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sign", nil, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Renew asks for a new certificate for the holder of the client certificate
// in Config.Certificate.
func (c *Client) Renew(ctx context.Context, req RenewRequest) (*SignResponse, error) {
	var resp SignResponse
	if err := c.do(ctx, http.MethodPost, "/v1/renew", nil, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Revoke revokes a certificate, as an admin or as its holder, and returns its
// record.
func (c *Client) Revoke(ctx context.Context, req RevokeRequest) (*Certificate, error) {
	var cert Certificate
	if err := c.do(ctx, http.MethodPost, "/v1/revoke", nil, req, &cert); err != nil {
		return nil, err
	}
	return &cert, nil
}

// ListCertificates returns one page of the certificates q selects.
func (c *Client) ListCertificates(ctx context.Context, q CertificateQuery) (*CertificatePage, error) {
	values := url.Values{}
	if q.Name != "" {
		values.Set("name", q.Name)
	}
	if q.Status != "" {
		values.Set("status", q.Status)
	}
	switch {
	case !q.ExpiringBefore.IsZero() && q.ExpiringWithin != 0:
		return nil, errors.New("client: set ExpiringBefore or ExpiringWithin, not both")
	case !q.ExpiringBefore.IsZero():
		values.Set("expiring_before", q.ExpiringBefore.UTC().Format(time.RFC3339))
	case q.ExpiringWithin != 0:
		values.Set("expiring_before", q.ExpiringWithin.String())
	}
	if q.Limit > 0 {
		values.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		values.Set("after", q.After)
	}
	var page CertificatePage
	if err := c.do(ctx, http.MethodGet, "/v1/certificates", values, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// RevokeMatching revokes every valid, unexpired certificate with a name,
// with a SPIFFE ID, or of an intermediate (admin), and returns their
// serials.
func (c *Client) RevokeMatching(ctx context.Context, req RevokeMatchingRequest) (*RevokedSet, error) {
	var out wire.RevokedSet
	if err := c.do(ctx, http.MethodPost, "/v1/revoke/matching", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCertificate returns the record of one certificate, with its PEM.
func (c *Client) GetCertificate(ctx context.Context, serial store.Serial) (*Certificate, error) {
	if serial == "" {
		return nil, errors.New("client: empty serial")
	}
	var cert Certificate
	if err := c.do(ctx, http.MethodGet, "/v1/certificates/"+url.PathEscape(string(serial)), nil, nil, &cert); err != nil {
		return nil, err
	}
	return &cert, nil
}

// CreateToken creates a one-time token that authorises one certificate.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*Token, error) {
	var tok Token
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, req, &tok); err != nil {
		return nil, err
	}
	return &tok, nil
}

// ListProvisioners returns every provisioner.
func (c *Client) ListProvisioners(ctx context.Context) ([]Provisioner, error) {
	var list wire.ProvisionerList
	if err := c.do(ctx, http.MethodGet, "/v1/provisioners", nil, nil, &list); err != nil {
		return nil, err
	}
	return list.Provisioners, nil
}

// CreateProvisioner creates a provisioner; it fails with code "conflict" if
// one of that name exists.
func (c *Client) CreateProvisioner(ctx context.Context, p Provisioner) (*Provisioner, error) {
	var created Provisioner
	if err := c.do(ctx, http.MethodPost, "/v1/provisioners", nil, p, &created); err != nil {
		return nil, err
	}
	return &created, nil
}

// GetProvisioner returns one provisioner.
func (c *Client) GetProvisioner(ctx context.Context, name string) (*Provisioner, error) {
	if name == "" {
		return nil, errors.New("client: empty provisioner name")
	}
	var p Provisioner
	if err := c.do(ctx, http.MethodGet, "/v1/provisioners/"+url.PathEscape(name), nil, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// UpdateProvisioner replaces the provisioner named p.Name with p.
func (c *Client) UpdateProvisioner(ctx context.Context, p Provisioner) (*Provisioner, error) {
	if p.Name == "" {
		return nil, errors.New("client: empty provisioner name")
	}
	var updated Provisioner
	if err := c.do(ctx, http.MethodPut, "/v1/provisioners/"+url.PathEscape(p.Name), nil, p, &updated); err != nil {
		return nil, err
	}
	return &updated, nil
}

// DeleteProvisioner deletes a provisioner.
func (c *Client) DeleteProvisioner(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("client: empty provisioner name")
	}
	return c.do(ctx, http.MethodDelete, "/v1/provisioners/"+url.PathEscape(name), nil, nil, nil)
}

// CheckPolicy asks whether a provisioner's policy would allow a request,
// without issuing anything.
func (c *Client) CheckPolicy(ctx context.Context, req PolicyCheckRequest) (*policy.Decision, error) {
	var d policy.Decision
	if err := c.do(ctx, http.MethodPost, "/v1/policy/check", nil, req, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Roots returns the CA's root certificates from /roots.pem.
func (c *Client) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	return c.certificates(ctx, "/roots.pem")
}

// Intermediates returns the CA's unexpired intermediates from
// /intermediates.pem, newest first.
func (c *Client) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	return c.certificates(ctx, "/intermediates.pem")
}

func (c *Client) certificates(ctx context.Context, path string) ([]*x509.Certificate, error) {
	data, err := c.send(ctx, http.MethodGet, path, nil, nil, "application/pem-certificate-chain")
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificatesPEM parses every CERTIFICATE block in data, in order, and
// ignores other blocks. It fails if there is none.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	return ca.ParseCertificatesPEM(data)
}

// LoadCredentials reads a certificate chain (PEM, leaf first) and its private
// key (PEM: plain PKCS#8, or meshpki-encrypted under passphrase) and returns
// them as a TLS certificate for Config.Certificate, with Leaf set. It fails if
// the key does not belong to the leaf.
func LoadCredentials(certFile, keyFile string, passphrase []byte) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("client: read key: %w", err)
	}
	cred, err := parseCredentials(certPEM, keyPEM, passphrase)
	if err != nil {
		return nil, fmt.Errorf("client: %s, %s: %w", certFile, keyFile, err)
	}
	return cred, nil
}

// ParseCredentials is LoadCredentials on data already read.
func ParseCredentials(certPEM, keyPEM, passphrase []byte) (*tls.Certificate, error) {
	cred, err := parseCredentials(certPEM, keyPEM, passphrase)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return cred, nil
}

// ErrKeyMismatch is a credential whose key does not belong to its
// certificate.
var ErrKeyMismatch = errors.New("the key does not belong to the certificate")

func parseCredentials(certPEM, keyPEM, passphrase []byte) (*tls.Certificate, error) {
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, err
	}
	signer, err := keys.ParsePrivateKeyPEM(keyPEM, passphrase)
	if err != nil {
		return nil, err
	}
	if !samePublicKey(certs[0].PublicKey, signer.Public()) {
		return nil, ErrKeyMismatch
	}
	cred := &tls.Certificate{PrivateKey: signer, Leaf: certs[0]}
	for _, cert := range certs {
		cred.Certificate = append(cred.Certificate, cert.Raw)
	}
	return cred, nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

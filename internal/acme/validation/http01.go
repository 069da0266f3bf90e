package validation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// maxHTTPBody is the longest http-01 response body accepted, in bytes.
const maxHTTPBody = 1024

const userAgent = "meshpki-acme-validation"

// HTTP01 checks an http-01 challenge (RFC 8555, section 8.3; RFC 8738,
// section 3 for IP identifiers): a GET of
// http://<id>:<HTTPPort>/.well-known/acme-challenge/<token> must answer
// 200 with keyAuthorization as its body, surrounding whitespace aside.
//
// A DNS name is resolved through [Config.Resolver]. Up to 10 redirects are
// followed, each only to http on HTTPPort or https (unverified) on
// TLSPort. Errors are as for [Validator.Validate].
func (v *Validator) HTTP01(ctx context.Context, id Identifier, token, keyAuthorization string) error {
	return v.attempt(ctx, ChallengeHTTP01, id, func(ctx context.Context) error {
		return v.http01(ctx, id, token, keyAuthorization)
	})
}

func (v *Validator) http01(ctx context.Context, id Identifier, token, keyAuthorization string) error {
	ctx = withFetchState(ctx)
	addr, err := checkIdentifier(ChallengeHTTP01, id)
	if err != nil {
		return err
	}
	if !isToken(token) {
		return failf(TypeMalformed, nil, "http-01: token %q is not base64url", clip(token, 64))
	}
	host := id.Value
	if addr.IsValid() {
		host = addr.String()
	}
	target := (&url.URL{
		Scheme: "http",
		Host:   hostPort(host, v.httpPort, 80),
		Path:   "/.well-known/acme-challenge/" + token,
	}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return failf(TypeMalformed, err, "http-01: building request for %s: %v", target, err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")

	resp, err := v.client.Do(req)
	if err != nil {
		return v.httpFailure(target, err)
	}
	defer resp.Body.Close()
	fetched := resp.Request.URL.String()
	if fetched != target {
		fetched = target + " (redirected to " + clip(fetched, 256) + ")"
	}
	if resp.StatusCode != http.StatusOK {
		return failf(TypeUnauthorized, nil, "http-01: fetching %s: got status %d", fetched, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return failf(TypeConnection, err, "http-01: reading the response from %s: %s", fetched, describeNetErr(err, v.timeout))
	}
	if len(body) > maxHTTPBody {
		return failf(TypeIncorrectResponse, nil, "http-01: fetching %s: response body is longer than %d bytes", fetched, maxHTTPBody)
	}
	got := bytes.TrimSpace(body)
	if subtle.ConstantTimeCompare(got, []byte(keyAuthorization)) != 1 {
		// Never echo the body: the problem document reaches the client,
		// and the body may be a page the client could not read itself.
		sum := sha256.Sum256(got)
		return failf(TypeIncorrectResponse, nil, "http-01: fetching %s: the body is not the key authorization (got %d bytes with SHA-256 %x)", fetched, len(got), sum[:8])
	}
	return nil
}

// httpFailure turns an error from the HTTP client into an *Error.
func (v *Validator) httpFailure(target string, err error) error {
	var verr *Error
	if errors.As(err, &verr) { // from checkRedirect
		return verr
	}
	cause := err
	var uerr *url.Error
	if errors.As(err, &uerr) {
		target, cause = clip(uerr.URL, 256), uerr.Err
	}
	var herr *hopError
	if errors.As(err, &herr) {
		return failf(herr.typ, err, "http-01: fetching %s: %s", target, herr.msg)
	}
	return failf(TypeConnection, err, "http-01: fetching %s: %s", target, describeNetErr(cause, v.timeout))
}

func (v *Validator) newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            v.dialHTTP,
			DialTLSContext:         v.dialHTTPS,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: v.checkRedirect,
	}
}

// checkRedirect allows up to maxRedirects redirects, each to http on the
// http-01 port or https on the tls-alpn-01 port.
func (v *Validator) checkRedirect(req *http.Request, via []*http.Request) error {
	from := via[0].URL.String()
	to := clip(req.URL.String(), 256)
	if len(via) > maxRedirects {
		return failf(TypeConnection, nil, "http-01: fetching %s: more than %d redirects", from, maxRedirects)
	}
	fetchStateOf(req.Context()).markRedirected()
	var allowed int
	switch req.URL.Scheme {
	case "http":
		allowed = v.httpPort
	case "https":
		allowed = v.tlsPort
	default:
		return failf(TypeConnection, nil, "http-01: fetching %s: redirect to %s refused: only http and https are allowed", from, to)
	}
	port := defaultPort(req.URL.Scheme)
	if p := req.URL.Port(); p != "" {
		port, _ = strconv.Atoi(p) // url.Parse has checked it is digits
	}
	if port != allowed {
		return failf(TypeConnection, nil, "http-01: fetching %s: redirect to %s refused: %s is allowed only on port %d", from, to, req.URL.Scheme, allowed)
	}
	host := req.URL.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" || !usableAddr(addr.Unmap()) {
			return failf(TypeConnection, nil, "http-01: fetching %s: redirect to %s refused: not a unicast address", from, to)
		}
	} else if !isDNSName(strings.TrimSuffix(host, ".")) {
		return failf(TypeConnection, nil, "http-01: fetching %s: redirect to %s refused: %q is not a valid host name", from, to, host)
	}
	return nil
}

func (v *Validator) dialHTTP(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return v.dial(ctx, host, port)
}

// dialHTTPS connects for an https redirect target. The certificate is not
// verified: RFC 8555 does not require it, and the content is checked.
func (v *Validator) dialHTTPS(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	conn, err := v.dial(ctx, host, port)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true, // validation needs no trust, only the body
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
	}
	if _, err := netip.ParseAddr(host); err != nil {
		cfg.ServerName = host
	}
	tlsConn := tls.Client(conn, cfg)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		if isTimeout(err) {
			return nil, &hopError{TypeConnection, fmt.Sprintf("TLS handshake with %s: %s", addr, describeNetErr(err, v.timeout)), err}
		}
		return nil, &hopError{TypeTLS, fmt.Sprintf("TLS handshake with %s: %s", addr, describeNetErr(err, v.timeout)), err}
	}
	return tlsConn, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, &hopError{TypeConnection, fmt.Sprintf("bad address %q", addr), err}
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, &hopError{TypeConnection, fmt.Sprintf("bad port in %q", addr), err}
	}
	return host, port, nil
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// hostPort is the URL authority for host on port, leaving out the
// scheme's default port.
func hostPort(host string, port, schemeDefault int) string {
	if port == schemeDefault {
		if addr, err := netip.ParseAddr(host); err == nil && addr.Is6() {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// isToken reports whether token is a non-empty base64url string
// (RFC 8555, section 8.1), safe to put in a URL path.
func isToken(token string) bool {
	if token == "" || len(token) > 256 {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// clip shortens s to at most n bytes for an error detail.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

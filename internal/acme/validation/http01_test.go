package validation

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const challengePath = "/.well-known/acme-challenge/"

// challengeServer serves http-01 responses chosen by token, as a host
// answering for a.test, b.test and loopback addresses would.
type challengeServer struct {
	plain     *httptest.Server
	tls       *httptest.Server
	otherPort int // a port that is neither the http-01 nor the tls-alpn-01 port

	mu    sync.Mutex
	hosts []string // Host headers seen by the "good" token
}

func newChallengeServer(t *testing.T) *challengeServer {
	t.Helper()
	s := &challengeServer{}
	s.plain = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.plain.Close)
	s.tls = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.tls.Close)
	other := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(other.Close)
	s.otherPort = portOf(t, other.Listener.Addr())
	return s
}

func (s *challengeServer) httpPort(t *testing.T) int { return portOf(t, s.plain.Listener.Addr()) }
func (s *challengeServer) tlsPort(t *testing.T) int  { return portOf(t, s.tls.Listener.Addr()) }

func (s *challengeServer) serve(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, challengePath)
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, httpPort, _ := net.SplitHostPort(s.plain.Listener.Addr().String())
	_, tlsPort, _ := net.SplitHostPort(s.tls.Listener.Addr().String())
	redirect := func(url string) { http.Redirect(w, r, url, http.StatusFound) }
	switch token {
	case "good":
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		io.WriteString(w, testKeyAuth)
	case "notfound":
		http.NotFound(w, r)
	case "wrong":
		io.WriteString(w, "not-the-key-authorization")
	case "spaces":
		io.WriteString(w, "\r\n \t"+testKeyAuth+" \n\n")
	case "oversized":
		io.WriteString(w, testKeyAuth+strings.Repeat(" ", 2000))
	case "redirect-same-port":
		redirect("http://b.test:" + httpPort + challengePath + "good")
	case "redirect-https":
		redirect("https://a.test:" + tlsPort + challengePath + "good")
	case "redirect-relative":
		redirect(challengePath + "good")
	case "redirect-other-port":
		redirect(fmt.Sprintf("http://a.test:%d%sgood", s.otherPort, challengePath))
	case "redirect-default-port":
		redirect("http://a.test" + challengePath + "good")
	case "redirect-ftp":
		redirect("ftp://a.test" + challengePath + "good")
	case "redirect-nxdomain":
		redirect("http://missing.test:" + httpPort + challengePath + "good")
	case "redirect-loop":
		redirect(challengePath + "redirect-loop")
	case "redirect-chain-10", "redirect-chain-9", "redirect-chain-8", "redirect-chain-7", "redirect-chain-6",
		"redirect-chain-5", "redirect-chain-4", "redirect-chain-3", "redirect-chain-2", "redirect-chain-1":
		var n int
		fmt.Sscanf(token, "redirect-chain-%d", &n)
		next := "good"
		if n > 1 {
			next = fmt.Sprintf("redirect-chain-%d", n-1)
		}
		redirect(challengePath + next)
	case "redirect-loopback-literal":
		redirect("http://127.0.0.1:" + httpPort + challengePath + "good")
	case "redirect-metadata":
		redirect("http://169.254.169.254:" + httpPort + challengePath + "good")
	case "redirect-metadata-name":
		redirect("http://metadata.test:" + httpPort + challengePath + "good")
	case "redirect-private":
		redirect("http://10.0.0.1:" + httpPort + challengePath + "good")
	case "internal-page":
		io.WriteString(w, "SECRET-internal-page-content")
	case "hang":
		<-r.Context().Done()
	default:
		http.NotFound(w, r)
	}
}

func TestHTTP01(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")
	d.A("b.test", "127.0.0.1")
	d.A("zero.test", "0.0.0.0")
	d.CNAME("alias.test", "a.test")
	s := newChallengeServer(t)
	v := newTestValidator(d, s.httpPort(t), s.tlsPort(t))
	// The challenge servers here all sit on loopback, where redirects are
	// refused unless the operator allows them (TestHTTP01RedirectsInto…).
	v.redirectAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

	tests := []struct {
		name     string
		id       Identifier
		token    string
		wantType string
	}{
		{"dns identifier resolved through the resolver", dnsID("a.test"), "good", ""},
		{"dns identifier behind a CNAME", dnsID("alias.test"), "good", ""},
		{"ip identifier", ipID("127.0.0.1"), "good", ""},
		{"surrounding whitespace is ignored", dnsID("a.test"), "spaces", ""},
		{"redirect to the http-01 port is followed", dnsID("a.test"), "redirect-same-port", ""},
		{"relative redirect is followed", dnsID("a.test"), "redirect-relative", ""},
		{"redirect to https on the tls-alpn-01 port is followed", dnsID("a.test"), "redirect-https", ""},
		{"ten redirects are followed", dnsID("a.test"), "redirect-chain-10", ""},
		{"status 404 is unauthorized", dnsID("a.test"), "notfound", TypeUnauthorized},
		{"wrong body", dnsID("a.test"), "wrong", TypeIncorrectResponse},
		{"body over 1 KiB", dnsID("a.test"), "oversized", TypeIncorrectResponse},
		{"NXDOMAIN", dnsID("missing.test"), "good", TypeDNS},
		{"only unusable addresses", dnsID("zero.test"), "good", TypeDNS},
		{"redirect to another port is refused", dnsID("a.test"), "redirect-other-port", TypeConnection},
		{"redirect to the default port is refused", dnsID("a.test"), "redirect-default-port", TypeConnection},
		{"redirect to ftp is refused", dnsID("a.test"), "redirect-ftp", TypeConnection},
		{"redirect to an NXDOMAIN host", dnsID("a.test"), "redirect-nxdomain", TypeDNS},
		{"redirect loop stops after ten", dnsID("a.test"), "redirect-loop", TypeConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.HTTP01(context.Background(), tt.id, tt.token, testKeyAuth)
			checkResult(t, err, tt.wantType)
		})
	}
}

func TestHTTP01SendsTheIdentifierAsHost(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")
	s := newChallengeServer(t)
	port := s.httpPort(t)
	v := newTestValidator(d, port, 0)
	checkResult(t, v.HTTP01(context.Background(), dnsID("A.test"), "good", testKeyAuth), "")
	checkResult(t, v.HTTP01(context.Background(), ipID("127.0.0.1"), "good", testKeyAuth), "")
	want := []string{fmt.Sprintf("A.test:%d", port), fmt.Sprintf("127.0.0.1:%d", port)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fmt.Sprint(s.hosts) != fmt.Sprint(want) {
		t.Fatalf("Host headers %q, want %q", s.hosts, want)
	}
}

func TestHTTP01ConnectionRefused(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")
	v := newTestValidator(d, closedPort(t), 0)
	checkResult(t, v.HTTP01(context.Background(), dnsID("a.test"), "good", testKeyAuth), TypeConnection)
	checkResult(t, v.HTTP01(context.Background(), ipID("127.0.0.1"), "good", testKeyAuth), TypeConnection)
}

func TestHTTP01TimesOut(t *testing.T) {
	s := newChallengeServer(t)
	v := New(Config{HTTPPort: s.httpPort(t), Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := v.HTTP01(context.Background(), ipID("127.0.0.1"), "hang", testKeyAuth)
	checkResult(t, err, TypeConnection)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("took %s with a 200ms timeout", elapsed)
	}
	if !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Fatalf("detail %q does not say it timed out", err)
	}
}

func TestHTTP01ResolverDown(t *testing.T) {
	v := newTestValidator(nil, 80, 0) // resolver 127.0.0.1:1, where nothing listens
	checkResult(t, v.HTTP01(context.Background(), dnsID("a.test"), "good", testKeyAuth), TypeDNS)
}

func TestHTTP01IPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI machines have an IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	}
	s := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, testKeyAuth)
	})}}
	s.Start()
	t.Cleanup(s.Close)
	d := newTestDNS(t)
	d.A("six.test", "::1")
	v := newTestValidator(d, portOf(t, ln.Addr()), 0)
	checkResult(t, v.HTTP01(context.Background(), ipID("::1"), "good", testKeyAuth), "")
	checkResult(t, v.HTTP01(context.Background(), dnsID("six.test"), "good", testKeyAuth), "")
}

// TestHTTP01RedirectsIntoInternalNetworksAreRefused: the CA's validation is
// not a way into its own network. Redirects never lead to loopback or
// link-local addresses, nor to private ones unless the identifier is there;
// link-local is refused even as the identifier's own address; and a wrong
// body is never echoed in the problem detail.
func TestHTTP01RedirectsIntoInternalNetworksAreRefused(t *testing.T) {
	d := newTestDNS(t)
	d.A("a.test", "127.0.0.1")
	d.A("b.test", "127.0.0.1")
	d.A("metadata.test", "169.254.169.254")
	s := newChallengeServer(t)
	v := newTestValidator(d, s.httpPort(t), s.tlsPort(t))
	tests := []struct {
		name, token, want string
		id                Identifier
		wantType          string
	}{
		{"redirect to a name on loopback", "redirect-same-port", "loopback", dnsID("a.test"), TypeConnection},
		{"relative redirect back to loopback", "redirect-relative", "loopback", dnsID("a.test"), TypeConnection},
		{"redirect to a loopback literal", "redirect-loopback-literal", "loopback", dnsID("a.test"), TypeConnection},
		{"redirect to the metadata address", "redirect-metadata", "link-local", dnsID("a.test"), TypeConnection},
		{"redirect to a name on the metadata address", "redirect-metadata-name", "link-local", dnsID("a.test"), TypeConnection},
		{"redirect to a private address from loopback", "redirect-private", "private", dnsID("a.test"), TypeConnection},
		{"identifier on the metadata address", "good", "link-local", dnsID("metadata.test"), TypeConnection},
		{"link-local IP identifier", "good", "link-local", ipID("169.254.169.254"), TypeRejectedIdentifier},
		{"IPv6 link-local IP identifier", "good", "link-local", ipID("fe80::1"), TypeRejectedIdentifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.HTTP01(context.Background(), tt.id, tt.token, testKeyAuth)
			checkResult(t, err, tt.wantType)
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
	s.mu.Lock()
	fetched := len(s.hosts)
	s.mu.Unlock()
	if fetched != 0 {
		t.Fatalf("a refused redirect was fetched %d times", fetched)
	}
	// Allowing loopback does not allow link-local.
	v.redirectAllow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	if err := v.HTTP01(context.Background(), dnsID("a.test"), "redirect-metadata", testKeyAuth); err == nil || !strings.Contains(err.Error(), "link-local") {
		t.Fatalf("metadata redirect with everything allowed: %v", err)
	}
	err := v.HTTP01(context.Background(), dnsID("a.test"), "internal-page", testKeyAuth)
	checkResult(t, err, TypeIncorrectResponse)
	if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "28 bytes") {
		t.Fatalf("wrong-body detail %q echoes the body or omits its length", err)
	}
}

// TestRedirectIntoPrivateNetworkFollowsTheIdentifier checks the rule for
// private addresses, which this machine cannot listen on: allowed after an
// identifier that is itself private, refused after a public or loopback one.
func TestRedirectIntoPrivateNetworkFollowsTheIdentifier(t *testing.T) {
	v := New(Config{})
	private := netip.MustParseAddr("10.1.2.3")
	for _, tt := range []struct {
		origin netip.Addr
		want   bool
	}{
		{netip.MustParseAddr("192.168.1.10"), true},
		{netip.MustParseAddr("fd12::1"), true},
		{netip.MustParseAddr("203.0.113.7"), false},
		{netip.MustParseAddr("127.0.0.1"), false},
	} {
		ctx := withFetchState(context.Background())
		st := fetchStateOf(ctx)
		st.connected(tt.origin)
		st.markRedirected()
		if got, why := v.allowed(ctx, private); got != tt.want {
			t.Errorf("identifier at %s, redirect to %s: allowed=%v (%s), want %v", tt.origin, private, got, why, tt.want)
		}
		if got, _ := v.allowed(ctx, netip.MustParseAddr("203.0.113.9")); !got {
			t.Errorf("identifier at %s: a redirect to a public address is refused", tt.origin)
		}
	}
}

// TestHTTP01WithTheSystemResolver validates localhost and a name from
// /etc/hosts as the system resolves them: with no resolver configured the
// hosts file is read (a fully qualified lookup would skip it).
func TestHTTP01WithTheSystemResolver(t *testing.T) {
	s := newChallengeServer(t)
	v := New(Config{HTTPPort: s.httpPort(t), Timeout: 3 * time.Second})
	checkResult(t, v.HTTP01(context.Background(), dnsID("localhost"), "good", testKeyAuth), "")
	if name := hostsFileName(t); name != "" {
		checkResult(t, v.HTTP01(context.Background(), dnsID(name), "good", testKeyAuth), "")
	}
}

// hostsFileName returns a single-label name /etc/hosts maps to 127.0.0.1,
// other than localhost, or "".
func hostsFileName(t *testing.T) string {
	data, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "127.0.0.1" {
			for _, n := range f[1:] {
				if n != "localhost" && !strings.Contains(n, ".") && isDNSName(n) {
					return n
				}
			}
		}
	}
	return ""
}

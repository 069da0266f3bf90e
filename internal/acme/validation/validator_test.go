package validation

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// testKeyAuth is a key authorization of the RFC 8555 shape.
const testKeyAuth = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"

func dnsID(name string) Identifier { return Identifier{Type: IdentifierDNS, Value: name} }
func ipID(addr string) Identifier  { return Identifier{Type: IdentifierIP, Value: addr} }

// newTestValidator returns a Validator that resolves through d (which may
// be nil when no lookup should happen).
func newTestValidator(d *testDNS, httpPort, tlsPort int) *Validator {
	cfg := Config{HTTPPort: httpPort, TLSPort: tlsPort, Timeout: 3 * time.Second, Resolver: "127.0.0.1:1"}
	if d != nil {
		cfg.Resolver = d.addr
	}
	return New(cfg)
}

// checkResult fails t unless err is nil (wantType "") or an *Error of wantType.
func checkResult(t *testing.T, err error, wantType string) {
	t.Helper()
	if wantType == "" {
		if err != nil {
			t.Fatalf("got %v, want valid", err)
		}
		return
	}
	var verr *Error
	if !errors.As(err, &verr) {
		t.Fatalf("got %v (%T), want *Error of type %s", err, err, wantType)
	}
	if verr.Type != wantType {
		t.Fatalf("got type %s (%s), want %s", verr.Type, verr.Detail, wantType)
	}
	if verr.Detail == "" || strings.HasSuffix(verr.Detail, ".") {
		t.Errorf("detail %q should be one sentence without a trailing period", verr.Detail)
	}
	t.Logf("%s: %s", verr.Type, verr.Detail)
}

func portOf(t *testing.T, addr net.Addr) int {
	t.Helper()
	return addr.(*net.TCPAddr).Port
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, ln.Addr())
	ln.Close()
	return port
}

func TestNewAppliesDefaults(t *testing.T) {
	v := New(Config{HTTPPort: -1, TLSPort: 70000})
	if v.httpPort != 80 || v.tlsPort != 443 || v.timeout != DefaultTimeout {
		t.Fatalf("got ports %d/%d timeout %s, want 80/443 %s", v.httpPort, v.tlsPort, v.timeout, DefaultTimeout)
	}
}

func TestValidateRejectsUnusableInput(t *testing.T) {
	v := newTestValidator(nil, 0, 0)
	tests := []struct {
		name      string
		challenge string
		id        Identifier
		token     string
		wantType  string
	}{
		{"unknown challenge type", "tls-sni-01", dnsID("a.test"), "tok", TypeMalformed},
		{"unknown identifier type", ChallengeHTTP01, Identifier{Type: "email", Value: "a@a.test"}, "tok", TypeUnsupportedIdentifier},
		{"wildcard for http-01", ChallengeHTTP01, dnsID("*.a.test"), "tok", TypeMalformed},
		{"wildcard for tls-alpn-01", ChallengeTLSALPN01, dnsID("*.a.test"), "", TypeMalformed},
		{"unstripped wildcard for dns-01", ChallengeDNS01, dnsID("*.a.test"), "", TypeMalformed},
		{"ip identifier for dns-01", ChallengeDNS01, ipID("127.0.0.1"), "", TypeMalformed},
		{"dns identifier holding an IP", ChallengeHTTP01, dnsID("127.0.0.1"), "tok", TypeRejectedIdentifier},
		{"bad DNS name", ChallengeHTTP01, dnsID("a.test/evil"), "tok", TypeRejectedIdentifier},
		{"DNS name with port", ChallengeTLSALPN01, dnsID("a.test:80"), "", TypeRejectedIdentifier},
		{"bad IP", ChallengeHTTP01, ipID("1.2.3"), "tok", TypeRejectedIdentifier},
		{"IP with zone", ChallengeHTTP01, ipID("fe80::1%eth0"), "tok", TypeRejectedIdentifier},
		{"unspecified IP", ChallengeTLSALPN01, ipID("0.0.0.0"), "", TypeRejectedIdentifier},
		{"token with a path", ChallengeHTTP01, ipID("127.0.0.1"), "../../etc/passwd", TypeMalformed},
		{"empty token", ChallengeHTTP01, ipID("127.0.0.1"), "", TypeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Validate(context.Background(), tt.challenge, tt.id, tt.token, testKeyAuth)
			checkResult(t, err, tt.wantType)
		})
	}
}

func TestValidateReturnsContextErrorWhenCallerCancels(t *testing.T) {
	v := newTestValidator(nil, 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := v.Validate(ctx, ChallengeHTTP01, ipID("127.0.0.1"), "tok", testKeyAuth)
	var verr *Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &verr) {
		t.Fatalf("got %v, want a non-*Error wrapping context.Canceled", err)
	}
}

func TestErrorMessage(t *testing.T) {
	err := failf(TypeUnauthorized, nil, "http-01: fetching %s: got status %d", "http://a.test/x", 404)
	if got, want := err.Error(), "validation: unauthorized: http-01: fetching http://a.test/x: got status 404"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReverseName(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"1.2.3.4", "4.3.2.1.in-addr.arpa"},
		{"127.0.0.1", "1.0.0.127.in-addr.arpa"},
		{"2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	}
	for _, tt := range tests {
		if got := reverseName(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("reverseName(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

func TestIsDNSName(t *testing.T) {
	good := []string{"a.test", "A-1.example.COM", "x", strings.Repeat("a", 63) + ".test"}
	bad := []string{"", "a..test", "a.test.", "-a.test", "a-.test", "a_b.test", "a test", "a.test:80", "ä.test", strings.Repeat("a", 64) + ".test", strings.Repeat("a.", 127) + "aa"}
	for _, name := range good {
		if !isDNSName(name) {
			t.Errorf("isDNSName(%q) = false, want true", name)
		}
	}
	for _, name := range bad {
		if isDNSName(name) {
			t.Errorf("isDNSName(%q) = true, want false", name)
		}
	}
}

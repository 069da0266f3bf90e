package policy

import (
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// names builds Names from text, failing the test on a bad entry.
func names(t testing.TB, sans ...string) Names {
	t.Helper()
	n, err := ParseNames(sans)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEvaluate(t *testing.T) {
	web := Policy{
		AllowDNS:   []string{"*.example.com", ".svc.example.com", "api.example.net"},
		DenyDNS:    []string{"*.prod.example.com", "admin.example.com"},
		AllowIP:    []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"},
		DenyIP:     []string{"10.99.0.0/16", "fd00:dead::/32"},
		AllowURI:   []string{"spiffe://td/ns/", "spiffe://td/team/*", "https://exact.example.com/id"},
		DenyURI:    []string{"spiffe://td/ns/secret/"},
		AllowEmail: []string{"@example.com", "ops@example.org"},
		DenyEmail:  []string{"root@example.com"},
	}
	tests := []struct {
		name    string
		policy  Policy
		req     Request
		allowed bool
		rule    string
		reason  string // substring of Reason, when set
	}{
		// Deny beats allow.
		{name: "deny beats allow for a DNS name", policy: Policy{AllowDNS: []string{".example.com"}, DenyDNS: []string{"*.prod.example.com"}},
			req: Request{Names: names(t, "db.prod.example.com")}, rule: `deny_dns "*.prod.example.com"`,
			reason: `"db.prod.example.com" is denied by deny_dns rule "*.prod.example.com"`},
		{name: "deny beats allow for an IP", policy: web, req: Request{Names: names(t, "10.99.1.1")}, rule: `deny_ip "10.99.0.0/16"`},
		{name: "a SPIFFE ID with an empty segment is denied whatever the rules", policy: web, req: Request{Names: Names{URIs: []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/ns//secret/db"}}}},
			rule: "invalid name", reason: "no empty segments"},
		{name: "a SPIFFE ID with a trailing slash is denied", policy: web, req: Request{Names: Names{URIs: []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/ns/web/"}}}},
			rule: "invalid name", reason: `does not end with "/"`},
		{name: "an underscore in a DNS name is denied even under an allow rule", policy: Policy{AllowDNS: []string{".example.internal"}},
			req: Request{Names: Names{DNS: []string{"under_score.example.internal"}}}, rule: "invalid name", reason: "underscore"},
		{name: "a malformed IDN label is denied", policy: Policy{AllowDNS: []string{".example.internal"}},
			req: Request{Names: Names{DNS: []string{"xn--0.example.internal"}}}, rule: "invalid name", reason: "Punycode"},
		{name: "deny beats allow for a URI", policy: web, req: Request{Names: names(t, "spiffe://td/ns/secret/db")}, rule: `deny_uri "spiffe://td/ns/secret/"`},
		{name: "deny beats allow for an email", policy: web, req: Request{Names: names(t, "root@example.com")}, rule: `deny_email "root@example.com"`},
		{name: "one denied name denies the request", policy: web, req: Request{Names: names(t, "a.example.com", "admin.example.com")}, rule: `deny_dns "admin.example.com"`},
		{name: "exact deny rule denies a wildcard covering it", policy: web, req: Request{Names: names(t, "*.example.com")}, rule: `deny_dns "admin.example.com"`,
			reason: "valid for that name"},
		{name: "exact deny rule two labels down does not deny a wildcard", policy: Policy{AllowDNS: []string{"*.example.com"}, DenyDNS: []string{"a.b.example.com"}},
			req: Request{Names: names(t, "*.example.com")}, allowed: true, rule: `allow_dns "*.example.com"`},
		{name: "deny wildcard denies requested wildcard", policy: web, req: Request{Names: names(t, "*.prod.example.com")}, rule: `deny_dns "*.prod.example.com"`},

		// Default deny.
		{name: "name no allow rule covers is denied", policy: web, req: Request{Names: names(t, "x.evil.com")}, rule: "default deny",
			reason: `no allow_dns rule covers "x.evil.com"`},
		{name: "no allow rules for a type denies that type", policy: Policy{AllowDNS: []string{"*.example.com"}}, req: Request{Names: names(t, "10.0.0.1")},
			rule: "default deny", reason: "the policy has no allow_ip rules"},
		{name: "zero policy denies everything", req: Request{Names: names(t, "a.example.com")}, rule: "default deny"},

		// DNS forms.
		{name: "wildcard matches one label", policy: web, req: Request{Names: names(t, "a.example.com")}, allowed: true, rule: `allow_dns "*.example.com"`},
		{name: "wildcard does not match two labels", policy: web, req: Request{Names: names(t, "a.b.example.com")}, rule: "default deny"},
		{name: "wildcard does not match the apex", policy: web, req: Request{Names: names(t, "example.com")}, rule: "default deny"},
		{name: "wildcard rule matches requested wildcard", policy: Policy{AllowDNS: []string{"*.example.com"}}, req: Request{Names: names(t, "*.example.com")},
			allowed: true, rule: `allow_dns "*.example.com"`},
		{name: "wildcard rule does not match deeper wildcard", policy: Policy{AllowDNS: []string{"*.example.com"}}, req: Request{Names: names(t, "*.a.example.com")}, rule: "default deny"},
		{name: "dot prefix matches any depth", policy: web, req: Request{Names: names(t, "a.b.c.svc.example.com")}, allowed: true, rule: `allow_dns ".svc.example.com"`},
		{name: "dot prefix matches one label", policy: Policy{AllowDNS: []string{".svc.example.com"}}, req: Request{Names: names(t, "a.svc.example.com")}, allowed: true},
		{name: "dot prefix does not match the apex", policy: Policy{AllowDNS: []string{".svc.example.com"}}, req: Request{Names: names(t, "svc.example.com")}, rule: "default deny"},
		{name: "dot prefix does not match a longer label", policy: Policy{AllowDNS: []string{".svc.example.com"}}, req: Request{Names: names(t, "xsvc.example.com")}, rule: "default deny"},
		{name: "dot prefix matches requested wildcard", policy: Policy{AllowDNS: []string{".example.com"}}, req: Request{Names: names(t, "*.a.example.com")}, allowed: true},
		{name: "exact rule matches", policy: web, req: Request{Names: names(t, "api.example.net")}, allowed: true, rule: `allow_dns "api.example.net"`},
		{name: "exact rule does not match subdomain", policy: web, req: Request{Names: names(t, "x.api.example.net")}, rule: "default deny"},
		{name: "exact rule does not match requested wildcard", policy: Policy{AllowDNS: []string{"a.example.com"}}, req: Request{Names: names(t, "*.example.com")}, rule: "default deny"},

		// Case.
		{name: "DNS names compare without case", policy: Policy{AllowDNS: []string{"*.Example.COM"}}, req: Request{Names: Names{DNS: []string{"Web.EXAMPLE.com"}}}, allowed: true},
		{name: "deny rules compare without case", policy: Policy{AllowDNS: []string{".example.com"}, DenyDNS: []string{"DB.example.com"}},
			req: Request{Names: Names{DNS: []string{"db.EXAMPLE.com"}}}, rule: `deny_dns "DB.example.com"`},
		{name: "email domains compare without case", policy: web, req: Request{Names: Names{Emails: []string{"alice@EXAMPLE.com"}}}, allowed: true, rule: `allow_email "@example.com"`},
		{name: "email local parts compare exactly", policy: Policy{AllowEmail: []string{"ops@example.org"}}, req: Request{Names: Names{Emails: []string{"OPS@example.org"}}}, rule: "default deny"},
		{name: "URI scheme and host compare without case", policy: web, req: Request{Names: names(t, "SPIFFE://TD/ns/x")}, allowed: true},

		// IPs.
		{name: "CIDR v4 contains", policy: web, req: Request{Names: names(t, "10.1.2.3")}, allowed: true, rule: `allow_ip "10.0.0.0/8"`},
		{name: "CIDR v4 excludes", policy: web, req: Request{Names: names(t, "11.1.2.3")}, rule: "default deny"},
		{name: "single IP rule", policy: web, req: Request{Names: names(t, "192.0.2.7")}, allowed: true, rule: `allow_ip "192.0.2.7"`},
		{name: "single IP rule excludes neighbour", policy: web, req: Request{Names: names(t, "192.0.2.8")}, rule: "default deny"},
		{name: "CIDR v6 contains", policy: web, req: Request{Names: names(t, "fd12::1")}, allowed: true, rule: `allow_ip "fd00::/8"`},
		{name: "CIDR v6 deny", policy: web, req: Request{Names: names(t, "fd00:dead::1")}, rule: `deny_ip "fd00:dead::/32"`},
		{name: "IPv4-mapped IPv6 is IPv4", policy: web, req: Request{Names: Names{IPs: []net.IP{net.ParseIP("::ffff:10.99.0.1")}}}, rule: `deny_ip "10.99.0.0/16"`},
		{name: "16-byte IPv4 allowed", policy: web, req: Request{Names: Names{IPs: []net.IP{net.ParseIP("10.0.0.1")}}}, allowed: true},
		{name: "v6 rule does not cover v4", policy: Policy{AllowIP: []string{"::/0"}}, req: Request{Names: names(t, "10.0.0.1")}, rule: "default deny"},

		// URIs.
		{name: "URI prefix matches below", policy: web, req: Request{Names: names(t, "spiffe://td/ns/x/y")}, allowed: true, rule: `allow_uri "spiffe://td/ns/"`},
		{name: "URI prefix boundary", policy: web, req: Request{Names: names(t, "spiffe://td/nsx")}, rule: "default deny"},
		{name: "URI prefix without its slash", policy: web, req: Request{Names: names(t, "spiffe://td/ns")}, rule: "default deny"},
		{name: "URI star prefix", policy: web, req: Request{Names: names(t, "spiffe://td/team/a")}, allowed: true, rule: `allow_uri "spiffe://td/team/*"`},
		{name: "URI star prefix boundary", policy: web, req: Request{Names: names(t, "spiffe://td/teamx")}, rule: "default deny"},
		{name: "URI prefix other host", policy: web, req: Request{Names: names(t, "spiffe://td2/ns/x")}, rule: "default deny"},
		{name: "URI exact", policy: web, req: Request{Names: names(t, "https://exact.example.com/id")}, allowed: true},
		{name: "URI exact rejects longer path", policy: web, req: Request{Names: names(t, "https://exact.example.com/id/x")}, rule: "default deny"},
		{name: "URI dot segments are invalid", policy: web, req: Request{Names: Names{URIs: []*url.URL{mustURL(t, "spiffe://td/ns/../secret/x")}}}, rule: "invalid name"},
		{name: "URI encoded slash is invalid", policy: web, req: Request{Names: Names{URIs: []*url.URL{mustURL(t, "spiffe://td/ns%2F..%2Fsecret")}}}, rule: "invalid name"},
		{name: "URI with user info is invalid", policy: web, req: Request{Names: Names{URIs: []*url.URL{mustURL(t, "spiffe://u@td/ns/x")}}}, rule: "invalid name"},
		{name: "nil URI is invalid", policy: web, req: Request{Names: Names{URIs: []*url.URL{nil}}}, rule: "invalid name"},

		// Emails.
		{name: "email domain rule", policy: web, req: Request{Names: names(t, "alice@example.com")}, allowed: true, rule: `allow_email "@example.com"`},
		{name: "email domain rule is exact domain", policy: web, req: Request{Names: names(t, "alice@sub.example.com")}, rule: "default deny"},
		{name: "email exact rule", policy: web, req: Request{Names: names(t, "ops@example.org")}, allowed: true, rule: `allow_email "ops@example.org"`},
		{name: "email exact rule other mailbox", policy: web, req: Request{Names: names(t, "dev@example.org")}, rule: "default deny"},

		// Invalid names and no names.
		{name: "zero names", policy: web, req: Request{}, rule: "no names"},
		{name: "invalid DNS name", policy: web, req: Request{Names: Names{DNS: []string{"a..example.com"}}}, rule: "invalid name", reason: "empty label"},
		{name: "DNS name with space", policy: web, req: Request{Names: Names{DNS: []string{"a b.example.com"}}}, rule: "invalid name"},
		{name: "DNS name that is an IP", policy: web, req: Request{Names: Names{DNS: []string{"10.0.0.1"}}}, rule: "invalid name"},
		{name: "wildcard in the middle", policy: web, req: Request{Names: Names{DNS: []string{"a.*.example.com"}}}, rule: "invalid name"},
		{name: "empty DNS name", policy: web, req: Request{Names: Names{DNS: []string{""}}}, rule: "invalid name"},
		{name: "IP of bad length", policy: web, req: Request{Names: Names{IPs: []net.IP{{1, 2, 3}}}}, rule: "invalid name"},
		{name: "invalid email", policy: web, req: Request{Names: Names{Emails: []string{"no-at-sign"}}}, rule: "invalid name"},

		// TTLs.
		{name: "zero TTL takes the package default", policy: web, req: Request{Names: names(t, "a.example.com")}, allowed: true},
		{name: "TTL below the minimum", policy: web, req: Request{Names: names(t, "a.example.com"), TTL: time.Minute}, rule: "min_ttl 5m0s"},
		{name: "negative TTL", policy: web, req: Request{Names: names(t, "a.example.com"), TTL: -time.Hour}, rule: "min_ttl 5m0s"},
		{name: "TTL above the package maximum", policy: web, req: Request{Names: names(t, "a.example.com"), TTL: 200 * time.Hour}, rule: "max_ttl 168h0m0s"},
		{name: "TTL above the policy maximum", policy: Policy{AllowDNS: []string{"a.com"}, MaxTTL: Duration(time.Hour), DefaultTTL: Duration(time.Hour)},
			req: Request{Names: names(t, "a.com"), TTL: 2 * time.Hour}, rule: "max_ttl 1h0m0s"},
		{name: "TTL at the maximum", policy: web, req: Request{Names: names(t, "a.example.com"), TTL: DefaultMaxTTL}, allowed: true},
		{name: "TTL at the minimum", policy: web, req: Request{Names: names(t, "a.example.com"), TTL: MinTTL}, allowed: true},

		// Key types.
		{name: "key type listed", policy: Policy{AllowDNS: []string{"a.com"}, KeyTypes: []keys.KeyType{keys.ECP256}}, req: Request{Names: names(t, "a.com"), KeyType: keys.ECP256}, allowed: true},
		{name: "key type not listed", policy: Policy{AllowDNS: []string{"a.com"}, KeyTypes: []keys.KeyType{keys.ECP256}}, req: Request{Names: names(t, "a.com"), KeyType: keys.RSA2048},
			rule: "key_types", reason: "allowed: ec-p256"},
		{name: "key type unchecked when empty", policy: Policy{AllowDNS: []string{"a.com"}, KeyTypes: []keys.KeyType{keys.ECP256}}, req: Request{Names: names(t, "a.com")}, allowed: true},
		{name: "any supported key type when policy lists none", policy: Policy{AllowDNS: []string{"a.com"}}, req: Request{Names: names(t, "a.com"), KeyType: keys.RSA4096}, allowed: true},
		{name: "unsupported key type denied when policy lists none", policy: Policy{AllowDNS: []string{"a.com"}}, req: Request{Names: names(t, "a.com"), KeyType: "rsa-1024"},
			rule: "key_types", reason: "not supported"},

		// Invalid policy.
		{name: "invalid policy denies", policy: Policy{AllowDNS: []string{"a..com"}}, req: Request{Names: names(t, "a.com")}, rule: "invalid policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.policy.Evaluate(tt.req)
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v, want %v (rule %s: %s)", d.Allowed, tt.allowed, d.Rule, d.Reason)
			}
			if tt.rule != "" && d.Rule != tt.rule {
				t.Errorf("Rule = %s, want %s (reason: %s)", d.Rule, tt.rule, d.Reason)
			}
			if d.Rule == "" || d.Reason == "" {
				t.Errorf("decision %+v lacks a rule or reason", d)
			}
			if tt.reason != "" && !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.reason)
			}
			if d.Allowed && d.TTL <= 0 {
				t.Errorf("allowed with TTL %v", d.TTL)
			}
			if !d.Allowed && d.TTL != 0 {
				t.Errorf("denied with TTL %v", d.TTL)
			}
		})
	}
}

func TestEvaluateEffectiveTTL(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		ttl    time.Duration
		want   time.Duration
	}{
		{name: "zero takes the package default", ttl: 0, want: DefaultTTL},
		{name: "zero takes the policy default", policy: Policy{DefaultTTL: Duration(time.Hour)}, ttl: 0, want: time.Hour},
		{name: "requested TTL is kept", ttl: 2 * time.Hour, want: 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.policy.AllowDNS = []string{"a.com"}
			d := tt.policy.Evaluate(Request{Names: names(t, "a.com"), TTL: tt.ttl})
			if !d.Allowed || d.TTL != tt.want {
				t.Errorf("got %+v, want allowed with TTL %v", d, tt.want)
			}
		})
	}
}

func TestEvaluateAllowedReason(t *testing.T) {
	p := Policy{AllowDNS: []string{"*.example.com"}, AllowURI: []string{"spiffe://td/"}}
	tests := []struct {
		name string
		sans []string
		want string
	}{
		{name: "one name", sans: []string{"a.example.com"}, want: `"a.example.com" is allowed by allow_dns rule "*.example.com"`},
		{name: "several names", sans: []string{"a.example.com", "b.example.com"}, want: `all 2 names are allowed, the first ("a.example.com") by allow_dns rule "*.example.com"`},
		{name: "URI", sans: []string{"spiffe://td/a"}, want: `"spiffe://td/a" is allowed by allow_uri rule "spiffe://td/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := p.Evaluate(Request{Names: names(t, tt.sans...)}); d.Reason != tt.want {
				t.Errorf("Reason = %q, want %q", d.Reason, tt.want)
			}
		})
	}
}

func TestCompiledIsolatedFromCaller(t *testing.T) {
	p := Policy{AllowDNS: []string{"a.com"}}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	p.AllowDNS[0] = "b.com"
	if got := c.Policy().AllowDNS[0]; got != "a.com" {
		t.Errorf("compiled policy changed with the caller's slice: %q", got)
	}
	c.Policy().AllowDNS[0] = "c.com"
	if d := c.Evaluate(Request{Names: names(t, "a.com")}); !d.Allowed {
		t.Errorf("a.com denied after mutating Policy()'s copy: %+v", d)
	}
}

func TestCompiledConcurrentUse(t *testing.T) {
	c, err := Compile(Policy{AllowDNS: []string{"*.example.com"}, DenyDNS: []string{"bad.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := Request{Names: names(t, "a.example.com")}, Request{Names: names(t, "bad.example.com")}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if !c.Evaluate(good).Allowed || c.Evaluate(bad).Allowed {
					t.Error("wrong decision under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNilCompiledDenies(t *testing.T) {
	var c *Compiled
	if d := c.Evaluate(Request{Names: names(t, "a.com")}); d.Allowed || d.Rule == "" {
		t.Errorf("nil Compiled gave %+v", d)
	}
}

func TestCompiledEvaluateAllocations(t *testing.T) {
	c, err := Compile(benchPolicy)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Names: names(t, "web.example.com", "10.1.2.3", "spiffe://td/ns/web/sa/api"), TTL: time.Hour, KeyType: keys.ECP256}
	if allocs := testing.AllocsPerRun(100, func() { c.Evaluate(req) }); allocs > 1 {
		t.Errorf("allowed Evaluate allocates %v times, want at most 1", allocs)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var benchPolicy = Policy{
	AllowDNS:   []string{"*.example.com", ".svc.cluster.local", "api.example.net", "*.internal.example.org"},
	DenyDNS:    []string{"*.prod.example.com", "admin.example.com", ".secret.svc.cluster.local"},
	AllowIP:    []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8"},
	DenyIP:     []string{"10.99.0.0/16"},
	AllowURI:   []string{"spiffe://td/ns/", "spiffe://other/ns/web/"},
	DenyURI:    []string{"spiffe://td/ns/kube-system/"},
	AllowEmail: []string{"@example.com"},
	MaxTTL:     Duration(72 * time.Hour),
	KeyTypes:   []keys.KeyType{keys.ECP256, keys.Ed25519},
}

func BenchmarkCompiledEvaluate(b *testing.B) {
	c, err := Compile(benchPolicy)
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Names: names(b, "web.example.com", "web.default.svc.cluster.local", "10.1.2.3", "spiffe://td/ns/web/sa/api"), TTL: time.Hour, KeyType: keys.ECP256}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Evaluate(req).Allowed {
			b.Fatal("denied")
		}
	}
}

func BenchmarkCompiledEvaluateParallel(b *testing.B) {
	c, err := Compile(benchPolicy)
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Names: names(b, "web.example.com", "web.default.svc.cluster.local", "10.1.2.3", "spiffe://td/ns/web/sa/api"), TTL: time.Hour, KeyType: keys.ECP256}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !c.Evaluate(req).Allowed {
				b.Error("denied")
				return
			}
		}
	})
}

func BenchmarkCompiledEvaluateDenied(b *testing.B) {
	c, err := Compile(benchPolicy)
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Names: names(b, "x.evil.com")}
	b.ReportAllocs()
	for b.Loop() {
		if c.Evaluate(req).Allowed {
			b.Fatal("allowed")
		}
	}
}

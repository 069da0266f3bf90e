package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

func TestMaxTTLBelowPackageDefaultLowersTheDefault(t *testing.T) {
	p := Policy{MaxTTL: Duration(4 * time.Hour)}
	if got := p.EffectiveDefaultTTL(); got != 4*time.Hour {
		t.Fatalf("EffectiveDefaultTTL() = %s, want 4h (the max)", got)
	}
	if got := (Policy{}).EffectiveDefaultTTL(); got != DefaultTTL {
		t.Fatalf("zero policy default = %s, want %s", got, DefaultTTL)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		wantErr string // substring of the error; "" for a valid policy
	}{
		{name: "zero policy is valid", policy: Policy{}},
		{name: "every rule form is valid", policy: Policy{
			AllowDNS:   []string{"api.example.com", "*.example.com", ".svc.example.com", "Upper.Example.COM", "_acme.example.com", "localhost"},
			DenyDNS:    []string{"*.prod.example.com"},
			AllowIP:    []string{"10.0.0.0/8", "192.0.2.1", "fd00::/8", "::1", "::ffff:10.0.0.0/104"},
			DenyIP:     []string{"10.1.2.3/8"},
			AllowURI:   []string{"spiffe://td/ns/", "spiffe://td/team/*", "https://a.example.com/id", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
			DenyURI:    []string{"spiffe://td/"},
			AllowEmail: []string{"alice@example.com", "@example.com"},
			DenyEmail:  []string{"root@example.com"},
			DefaultTTL: Duration(time.Hour),
			MaxTTL:     Duration(48 * time.Hour),
			KeyTypes:   []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048, keys.RSA3072, keys.RSA4096},
			Issuer:     "web-2",
		}},
		{name: "DNS empty label", policy: Policy{AllowDNS: []string{"a..example.com"}}, wantErr: `policy: allow_dns "a..example.com": empty label`},
		{name: "DNS empty rule", policy: Policy{DenyDNS: []string{""}}, wantErr: `policy: deny_dns "": empty name`},
		{name: "DNS wildcard in the middle", policy: Policy{AllowDNS: []string{"a.*.example.com"}}, wantErr: `allow_dns "a.*.example.com"`},
		{name: "DNS partial wildcard label", policy: Policy{AllowDNS: []string{"a*.example.com"}}, wantErr: `allow_dns "a*.example.com"`},
		{name: "DNS double wildcard", policy: Policy{AllowDNS: []string{"*.*.example.com"}}, wantErr: `allow_dns "*.*.example.com"`},
		{name: "DNS bare wildcard", policy: Policy{AllowDNS: []string{"*"}}, wantErr: `allow_dns "*"`},
		{name: "DNS dot and wildcard", policy: Policy{AllowDNS: []string{".*.example.com"}}, wantErr: `allow_dns ".*.example.com"`},
		{name: "DNS bare dot", policy: Policy{AllowDNS: []string{"."}}, wantErr: `allow_dns "."`},
		{name: "DNS trailing dot", policy: Policy{AllowDNS: []string{"example.com."}}, wantErr: "trailing dot"},
		{name: "DNS hyphen edge", policy: Policy{AllowDNS: []string{"-a.example.com"}}, wantErr: "hyphen"},
		{name: "DNS label too long", policy: Policy{AllowDNS: []string{strings.Repeat("a", 64) + ".com"}}, wantErr: "63"},
		{name: "DNS non-ASCII", policy: Policy{AllowDNS: []string{"bücher.example"}}, wantErr: "invalid character"},
		{name: "DNS rule that is an IP", policy: Policy{AllowDNS: []string{"10.0.0.1"}}, wantErr: "all digits"},
		{name: "IP garbage", policy: Policy{AllowIP: []string{"10.0.0"}}, wantErr: `policy: allow_ip "10.0.0"`},
		{name: "IP bad prefix length", policy: Policy{DenyIP: []string{"10.0.0.0/33"}}, wantErr: `deny_ip "10.0.0.0/33"`},
		{name: "IP zone", policy: Policy{AllowIP: []string{"fe80::1%eth0"}}, wantErr: "zone"},
		{name: "URI relative", policy: Policy{AllowURI: []string{"/ns/web"}}, wantErr: `allow_uri "/ns/web": not an absolute URI`},
		{name: "URI user info", policy: Policy{AllowURI: []string{"https://u:p@a.example.com/"}}, wantErr: "user info"},
		{name: "URI prefix without host", policy: Policy{AllowURI: []string{"file:///etc/"}}, wantErr: "scheme://host/path/"},
		{name: "URI prefix with query", policy: Policy{AllowURI: []string{"https://a.example.com/x?y=/"}}, wantErr: "query"},
		{name: "URI dot segment", policy: Policy{DenyURI: []string{"spiffe://td/a/../b/"}}, wantErr: `deny_uri "spiffe://td/a/../b/"`},
		{name: "URI does not parse", policy: Policy{AllowURI: []string{"http://[::1/"}}, wantErr: "does not parse"},
		{name: "email without at", policy: Policy{AllowEmail: []string{"example.com"}}, wantErr: `allow_email "example.com"`},
		{name: "email bad domain", policy: Policy{AllowEmail: []string{"@exa mple.com"}}, wantErr: "domain: invalid character"},
		{name: "email bad local part", policy: Policy{DenyEmail: []string{"a..b@example.com"}}, wantErr: "dot"},
		{name: "default TTL below minimum", policy: Policy{DefaultTTL: Duration(time.Minute)}, wantErr: `policy: default_ttl "1m0s": shorter than the minimum lifetime 5m0s`},
		{name: "max TTL below minimum", policy: Policy{MaxTTL: Duration(time.Minute)}, wantErr: `max_ttl "1m0s"`},
		{name: "negative TTL", policy: Policy{MaxTTL: Duration(-time.Hour)}, wantErr: "negative"},
		{name: "default TTL above max TTL", policy: Policy{DefaultTTL: Duration(2 * time.Hour), MaxTTL: Duration(time.Hour)}, wantErr: `default_ttl "2h0m0s": longer than max_ttl 1h0m0s`},
		{name: "a max TTL below the package default lowers the default", policy: Policy{MaxTTL: Duration(time.Hour)}},
		{name: "default TTL above package max TTL", policy: Policy{DefaultTTL: Duration(8 * 24 * time.Hour)}, wantErr: "longer than max_ttl 168h0m0s"},
		{name: "unknown key type", policy: Policy{KeyTypes: []keys.KeyType{"rsa-1024"}}, wantErr: `policy: key_types "rsa-1024": unknown key type`},
		{name: "issuer with capitals", policy: Policy{Issuer: "Web"}, wantErr: `policy: issuer "Web"`},
		{name: "issuer with slash", policy: Policy{Issuer: "a/b"}, wantErr: `issuer "a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Errorf("Validate() = %T, want a *RuleError inside", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Policy{AllowDNS: []string{"a..com"}, AllowIP: []string{"nope"}, Issuer: "X"}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{`allow_dns "a..com"`, `allow_ip "nope"`, `issuer "X"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if !strings.HasPrefix(line, "policy: ") {
			t.Errorf("error line %q lacks the policy: prefix", line)
		}
	}
}

func TestEffectiveSettings(t *testing.T) {
	var zero Policy
	if zero.EffectiveDefaultTTL() != DefaultTTL || zero.EffectiveMaxTTL() != DefaultMaxTTL || zero.EffectiveIssuer() != "default" {
		t.Errorf("zero policy: default %v, max %v, issuer %q", zero.EffectiveDefaultTTL(), zero.EffectiveMaxTTL(), zero.EffectiveIssuer())
	}
	p := Policy{DefaultTTL: Duration(time.Hour), MaxTTL: Duration(2 * time.Hour), Issuer: "web"}
	if p.EffectiveDefaultTTL() != time.Hour || p.EffectiveMaxTTL() != 2*time.Hour || p.EffectiveIssuer() != "web" {
		t.Errorf("set policy: default %v, max %v, issuer %q", p.EffectiveDefaultTTL(), p.EffectiveMaxTTL(), p.EffectiveIssuer())
	}
}

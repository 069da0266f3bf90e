package policy

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func FuzzParseNames(f *testing.F) {
	for _, s := range []string{
		"a.example.com", "*.example.com", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0",
		"spiffe://td/ns/web", "https://u@h/", "me@example.com", "a@b@c", "a..b", "xn--bcher-kva.example",
		"spiffe://td/a%2Fb", "http://h/a b", "a.example.com,10.0.0.1,spiffe://td/x,me@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		sans := strings.Split(input, ",")
		n, err := ParseNames(sans)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("error %q lacks the policy: prefix", err)
			}
			return
		}
		text := n.Strings()
		if len(text) != n.Len() {
			t.Errorf("Strings() has %d entries, Len() = %d", len(text), n.Len())
		}
		again, err := ParseNames(text)
		if err != nil {
			t.Fatalf("ParseNames(%q) succeeded but its Strings() %q do not parse: %v", sans, text, err)
		}
		if got := again.Strings(); !slices.Equal(got, text) {
			t.Errorf("round trip of %q: %q, then %q", sans, text, got)
		}
		if ok, missing := n.Contains(again); !ok {
			t.Errorf("names do not contain their own round trip: missing %q", missing)
		}
		if n.Len() > 0 {
			d := Policy{}.Evaluate(Request{Names: n})
			if d.Allowed || d.Rule != "default deny" {
				t.Errorf("zero policy gave %+v for valid names %q", d, text)
			}
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	for _, seed := range []struct{ rule, name string }{
		{"*.example.com", "a.example.com"},
		{".example.com", "*.a.example.com"},
		{"a.example.com", "*.example.com"},
		{"10.0.0.0/8", "10.1.2.3"},
		{"fd00::/8", "::ffff:10.0.0.1"},
		{"spiffe://td/ns/", "spiffe://td/ns/x"},
		{"spiffe://td/ns/*", "spiffe://td/ns/../x"},
		{"@example.com", "me@EXAMPLE.com"},
		{"me@example.com", "me@example.com"},
		{"urn:uuid:1", "urn:uuid:1"},
	} {
		f.Add(seed.rule, seed.name, int64(0))
	}
	f.Fuzz(func(t *testing.T, rule, name string, ttl int64) {
		allow := Policy{
			AllowDNS: []string{rule}, AllowIP: []string{rule}, AllowURI: []string{rule}, AllowEmail: []string{rule},
		}
		both := allow
		both.DenyDNS, both.DenyIP, both.DenyURI, both.DenyEmail = allow.AllowDNS, allow.AllowIP, allow.AllowURI, allow.AllowEmail

		var req Request
		req.TTL = time.Duration(ttl)
		if n, err := ParseNames([]string{name}); err == nil {
			req.Names = n
		} else {
			// Names a CSR could carry that ParseNames would refuse.
			req.Names.DNS = []string{name}
			req.Names.Emails = []string{name}
			if u, err := url.Parse(name); err == nil {
				req.Names.URIs = []*url.URL{u}
			}
		}

		for _, p := range []Policy{allow, both} {
			d := p.Evaluate(req)
			if !d.Allowed && (d.Rule == "" || d.Reason == "") {
				t.Fatalf("denied without a rule or reason: %+v", d)
			}
			if d.Allowed {
				if d.Rule == "" || d.Reason == "" {
					t.Fatalf("allowed without a rule or reason: %+v", d)
				}
				if d.TTL < MinTTL || d.TTL > p.EffectiveMaxTTL() {
					t.Fatalf("allowed with TTL %v out of range", d.TTL)
				}
			}
			c, err := Compile(p)
			if err != nil {
				continue
			}
			if cd := c.Evaluate(req); cd != d {
				t.Fatalf("Compiled.Evaluate = %+v, Policy.Evaluate = %+v", cd, d)
			}
		}
		if d := both.Evaluate(req); d.Allowed {
			t.Fatalf("rule %q in allow and deny lists allowed %q: deny must win (%+v)", rule, name, d)
		}
	})
}

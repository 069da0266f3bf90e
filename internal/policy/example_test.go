package policy_test

import (
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/policy"
)

func ExampleCompiled_Evaluate() {
	compiled, err := policy.Compile(policy.Policy{
		AllowDNS: []string{"*.example.com"},
		DenyDNS:  []string{"*.prod.example.com"},
		AllowURI: []string{"spiffe://example.com/ns/web/"},
		MaxTTL:   policy.Duration(72 * time.Hour),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, sans := range [][]string{
		{"api.example.com", "spiffe://example.com/ns/web/sa/api"},
		{"db.prod.example.com"},
		{"x.evil.com"},
		{"a.b.example.com"},
	} {
		names, err := policy.ParseNames(sans)
		if err != nil {
			fmt.Println(err)
			return
		}
		d := compiled.Evaluate(policy.Request{Names: names})
		fmt.Printf("%v %s: %s (ttl %v)\n", d.Allowed, d.Rule, d.Reason, d.TTL)
	}
	d := compiled.Evaluate(policy.Request{Names: policy.Names{DNS: []string{"api.example.com"}}, TTL: 30 * 24 * time.Hour})
	fmt.Printf("%v %s: %s\n", d.Allowed, d.Rule, d.Reason)
	// Output:
	// true allow_dns "*.example.com": all 2 names are allowed, the first ("api.example.com") by allow_dns rule "*.example.com" (ttl 24h0m0s)
	// false deny_dns "*.prod.example.com": "db.prod.example.com" is denied by deny_dns rule "*.prod.example.com" (ttl 0s)
	// false default deny: no allow_dns rule covers "x.evil.com" (ttl 0s)
	// false default deny: no allow_dns rule covers "a.b.example.com" (ttl 0s)
	// false max_ttl 72h0m0s: the requested lifetime 720h0m0s is longer than this policy's maximum 72h0m0s
}

func ExampleParseNames() {
	names, err := policy.ParseNames([]string{"Web.Example.com", "10.0.0.7", "spiffe://example.com/ns/web", "ops@example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(names.Strings())
	_, err = policy.ParseNames([]string{"web..example.com"})
	fmt.Println(err)
	// Output:
	// [web.example.com 10.0.0.7 spiffe://example.com/ns/web ops@example.com]
	// policy: "web..example.com" is not a valid DNS name: empty label
}

// Package policy owns who may get what: for each provisioner, the names
// (DNS with wildcards, IP ranges, URI/SPIFFE-ID prefixes, emails), lifetimes
// and key types it may be granted. Policy is data: it is stored with the
// provisioner and evaluated without issuing anything.
//
// # Evaluation
//
// Every name in a request is checked on its own, against the rules of its
// type: first the deny rules (a match denies the whole request), then the
// allow rules (no match denies it as "default deny"). Deny rules therefore
// always win, and a policy with no allow rules for a name type denies every
// name of that type. A request with no names at all is denied. After the
// names, the lifetime is checked against [MinTTL] and the policy's maximum,
// and the key type against the policy's list. A denied [Decision] always
// names the rule that decided in Rule and explains it in Reason.
//
// # Rules
//
// DNS rules are hostnames, compared without regard to case, in one of three
// forms:
//
//	"api.example.com"  exactly that name
//	"*.example.com"    exactly one label under example.com: it covers
//	                   "a.example.com" and the wildcard "*.example.com",
//	                   but not "a.b.example.com" nor "example.com"
//	".example.com"     any name under example.com, at any depth, including
//	                   wildcards such as "*.a.example.com", but not
//	                   "example.com" itself
//
// A requested wildcard such as "*.example.com" is matched as a literal name,
// so only a "*.example.com" or ".example.com" rule allows it. Because such a
// certificate is valid for every name one label below example.com, an exact
// deny rule such as "db.example.com" also denies it. Names must be ASCII
// (internationalised names in their "xn--" form), without a trailing dot, and
// must not end in an all-numeric label (IP addresses go in the IP SANs).
//
// IP rules are CIDR prefixes ("10.0.0.0/8", "fd00::/8") or single addresses.
// IPv4-mapped IPv6 addresses are treated as IPv4; an IPv4 address is only
// matched by IPv4 rules and an IPv6 address only by IPv6 rules.
//
// URI rules are absolute URIs. A rule ending in "/" (or "/*", which means the
// same) is a prefix: "spiffe://td/ns/" covers "spiffe://td/ns/x/y" but not
// "spiffe://td/nsx". Any other rule must match exactly. Scheme and host are
// compared without regard to case. URIs with user info, "." or ".." path
// segments, or a path in non-canonical percent-encoding are not valid names.
//
// Email rules are "user@domain" for one mailbox, or "@domain" for any mailbox
// at exactly that domain. Domains are compared without regard to case, local
// parts exactly. Local parts must be RFC 5322 dot-atoms (no quoted forms).
//
// # Use
//
// Validate a policy when it is stored, then compile it once and evaluate many
// requests against the compiled form, which is safe for concurrent use:
//
//	compiled, err := policy.Compile(p)
//	if err != nil {
//		return err // names the bad rule
//	}
//	d := compiled.Evaluate(policy.Request{Names: names, TTL: ttl, KeyType: kt})
//	if !d.Allowed {
//		return fmt.Errorf("denied by %s: %s", d.Rule, d.Reason)
//	}
package policy

package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// RuleError reports one policy setting that does not parse or is out of
// range. Validate and Compile return every problem found, joined; find the
// first with errors.As.
type RuleError struct {
	Field  string // the setting's JSON name, such as "allow_dns" or "max_ttl"
	Rule   string // the offending value as written
	Reason string // what is wrong with it
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("policy: %s %q: %s", e.Field, e.Rule, e.Reason)
}

// supportedKeyTypes are the key types a policy may list.
var supportedKeyTypes = []keys.KeyType{keys.ECP256, keys.ECP384, keys.Ed25519, keys.RSA2048, keys.RSA3072, keys.RSA4096}

// Rule texts of the decisions that no single policy rule makes.
const (
	ruleNoNames       = "no names"
	ruleInvalidName   = "invalid name"
	ruleDefaultDeny   = "default deny"
	ruleKeyTypes      = "key_types"
	ruleInvalidPolicy = "invalid policy"
)

var ruleMinTTL = "min_ttl " + MinTTL.String()

// Compiled is a validated policy with its rules parsed for fast evaluation.
// It is immutable and safe for concurrent use.
type Compiled struct {
	policy Policy

	allowDNS, denyDNS     []dnsRule
	allowIP, denyIP       []ipRule
	allowURI, denyURI     []uriRule
	allowEmail, denyEmail []emailRule

	defaultTTL, maxTTL time.Duration
	maxTTLRule         string
	keyTypes           []keys.KeyType
}

// Validate reports every rule and setting of p that does not parse or is out
// of range, each as a *RuleError, joined. It returns nil for a valid policy.
func (p Policy) Validate() error {
	_, err := Compile(p)
	return err
}

// Compile validates p and parses its rules once, for evaluating many
// requests. The error is the one Validate returns. Compile copies p, so
// later changes to p's slices do not affect the result.
func Compile(p Policy) (*Compiled, error) {
	p = p.clone()
	c := &Compiled{
		policy:     p,
		defaultTTL: p.EffectiveDefaultTTL(),
		maxTTL:     p.EffectiveMaxTTL(),
		keyTypes:   p.KeyTypes,
	}
	c.maxTTLRule = "max_ttl " + c.maxTTL.String()
	var errs []error
	bad := func(field, rule, reason string) {
		errs = append(errs, &RuleError{Field: field, Rule: rule, Reason: reason})
	}
	c.allowDNS = compileRules("allow_dns", p.AllowDNS, parseDNSRule, bad)
	c.denyDNS = compileRules("deny_dns", p.DenyDNS, parseDNSRule, bad)
	c.allowIP = compileRules("allow_ip", p.AllowIP, parseIPRule, bad)
	c.denyIP = compileRules("deny_ip", p.DenyIP, parseIPRule, bad)
	c.allowURI = compileRules("allow_uri", p.AllowURI, parseURIRule, bad)
	c.denyURI = compileRules("deny_uri", p.DenyURI, parseURIRule, bad)
	c.allowEmail = compileRules("allow_email", p.AllowEmail, parseEmailRule, bad)
	c.denyEmail = compileRules("deny_email", p.DenyEmail, parseEmailRule, bad)

	checkTTL := func(field string, d Duration) bool {
		switch {
		case d < 0:
			bad(field, d.String(), "must not be negative")
		case d != 0 && d.Std() < MinTTL:
			bad(field, d.String(), "shorter than the minimum lifetime "+MinTTL.String())
		default:
			return true
		}
		return false
	}
	defaultOK := checkTTL("default_ttl", p.DefaultTTL)
	maxOK := checkTTL("max_ttl", p.MaxTTL)
	if defaultOK && maxOK && c.defaultTTL > c.maxTTL {
		bad("default_ttl", p.DefaultTTL.String(), "longer than max_ttl "+c.maxTTL.String())
	}
	for _, kt := range p.KeyTypes {
		if !slices.Contains(supportedKeyTypes, kt) {
			bad("key_types", string(kt), "unknown key type; supported: "+keyTypeList(supportedKeyTypes))
		}
	}
	if why := checkIssuer(p.Issuer); why != "" {
		bad("issuer", p.Issuer, why)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func compileRules[R any](field string, rules []string, parse func(field, rule string) (R, string), bad func(field, rule, reason string)) []R {
	out := make([]R, 0, len(rules))
	for _, rule := range rules {
		r, why := parse(field, rule)
		if why != "" {
			bad(field, rule, why)
			continue
		}
		out = append(out, r)
	}
	return out
}

func checkIssuer(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return "want lowercase letters, digits and hyphens only"
		}
	}
	return ""
}

func keyTypeList(kts []keys.KeyType) string {
	s := make([]string, len(kts))
	for i, kt := range kts {
		s[i] = string(kt)
	}
	return strings.Join(s, ", ")
}

// Policy returns a copy of the policy c was compiled from.
func (c *Compiled) Policy() Policy { return c.policy.clone() }

func (p Policy) clone() Policy {
	p.AllowDNS = slices.Clone(p.AllowDNS)
	p.DenyDNS = slices.Clone(p.DenyDNS)
	p.AllowIP = slices.Clone(p.AllowIP)
	p.DenyIP = slices.Clone(p.DenyIP)
	p.AllowURI = slices.Clone(p.AllowURI)
	p.DenyURI = slices.Clone(p.DenyURI)
	p.AllowEmail = slices.Clone(p.AllowEmail)
	p.DenyEmail = slices.Clone(p.DenyEmail)
	p.KeyTypes = slices.Clone(p.KeyTypes)
	return p
}

// Evaluate compiles p and evaluates r against it; see Compiled.Evaluate.
// An invalid policy denies everything, with Rule "invalid policy". Compile
// once instead when evaluating many requests.
func (p Policy) Evaluate(r Request) Decision {
	c, err := Compile(p)
	if err != nil {
		return denied(ruleInvalidPolicy, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return c.Evaluate(r)
}

// Evaluate decides whether r may be issued. Each name is checked against
// the deny rules of its type, then the allow rules; then the lifetime, then
// the key type. The first failing check denies the request and is named in
// the Decision. An allowed Decision carries the lifetime to issue with.
func (c *Compiled) Evaluate(r Request) Decision {
	if c == nil {
		return denied(ruleInvalidPolicy, "no policy was compiled")
	}
	n := r.Names.Len()
	if n == 0 {
		return denied(ruleNoNames, "the request names no DNS names, IP addresses, URIs or email addresses")
	}
	var first *ruleText // the allow rule of the first name
	var firstName string
	firstPlain := false // firstName needs no escaping when quoted
	for _, name := range r.Names.DNS {
		rule, d := c.evaluateDNS(name)
		if rule == nil {
			return d
		}
		if first == nil {
			first, firstName, firstPlain = rule, name, true
		}
	}
	for _, ip := range r.Names.IPs {
		rule, d := c.evaluateIP(ip)
		if rule == nil {
			return d
		}
		if first == nil {
			first, firstName, firstPlain = rule, ip.String(), true
		}
	}
	for _, u := range r.Names.URIs {
		rule, d := c.evaluateURI(u)
		if rule == nil {
			return d
		}
		if first == nil {
			first, firstName = rule, u.String()
		}
	}
	for _, email := range r.Names.Emails {
		rule, d := c.evaluateEmail(email)
		if rule == nil {
			return d
		}
		if first == nil {
			first, firstName, firstPlain = rule, email, true
		}
	}

	ttl := r.TTL
	if ttl == 0 {
		ttl = c.defaultTTL
	}
	if ttl < MinTTL {
		return denied(ruleMinTTL, "the requested lifetime "+ttl.String()+" is shorter than the minimum "+MinTTL.String())
	}
	if ttl > c.maxTTL {
		return denied(c.maxTTLRule, "the requested lifetime "+ttl.String()+" is longer than this policy's maximum "+c.maxTTL.String())
	}

	if r.KeyType != "" {
		if !slices.Contains(supportedKeyTypes, r.KeyType) {
			return denied(ruleKeyTypes, "key type "+strconv.Quote(string(r.KeyType))+" is not supported; supported: "+keyTypeList(supportedKeyTypes))
		}
		if len(c.keyTypes) > 0 && !slices.Contains(c.keyTypes, r.KeyType) {
			return denied(ruleKeyTypes, "key type "+strconv.Quote(string(r.KeyType))+" is not allowed by this policy; allowed: "+keyTypeList(c.keyTypes))
		}
	}

	// Valid DNS names, emails and IPs need no escaping, so quoting them by
	// hand keeps the allowed path to this one allocation.
	quoted := firstName
	if !firstPlain {
		quoted = strconv.Quote(firstName)
		quoted = quoted[1 : len(quoted)-1]
	}
	var reason string
	if n == 1 {
		reason = `"` + quoted + `" is allowed by ` + first.phrase
	} else {
		reason = "all " + strconv.Itoa(n) + ` names are allowed, the first ("` + quoted + `") by ` + first.phrase
	}
	return Decision{Allowed: true, Rule: first.label, Reason: reason, TTL: ttl}
}

// evaluateDNS returns the allow rule that covers name, or nil and the
// denial.
func (c *Compiled) evaluateDNS(name string) (*ruleText, Decision) {
	if why := checkNameHostname(name, true); why != "" {
		return nil, denied(ruleInvalidName, strconv.Quote(name)+" is not a valid DNS name: "+why)
	}
	for i := range c.denyDNS {
		rule := &c.denyDNS[i]
		if rule.matches(name) {
			return nil, deniedBy(&rule.ruleText, strconv.Quote(name))
		}
		if rule.overlapsWildcard(name) {
			return nil, denied(rule.label, strconv.Quote(name)+" is denied by "+rule.phrase+", since a certificate for the wildcard is also valid for that name")
		}
	}
	for i := range c.allowDNS {
		if rule := &c.allowDNS[i]; rule.matches(name) {
			return &rule.ruleText, Decision{}
		}
	}
	return nil, defaultDeny("allow_dns", len(c.allowDNS), strconv.Quote(name))
}

func (c *Compiled) evaluateIP(ip net.IP) (*ruleText, Decision) {
	addr, ok := addrOf(ip)
	if !ok {
		return nil, denied(ruleInvalidName, "an IP address of "+strconv.Itoa(len(ip))+" bytes is not valid")
	}
	for i := range c.denyIP {
		if rule := &c.denyIP[i]; rule.prefix.Contains(addr) {
			return nil, deniedBy(&rule.ruleText, strconv.Quote(addr.String()))
		}
	}
	for i := range c.allowIP {
		if rule := &c.allowIP[i]; rule.prefix.Contains(addr) {
			return &rule.ruleText, Decision{}
		}
	}
	return nil, defaultDeny("allow_ip", len(c.allowIP), strconv.Quote(addr.String()))
}

func (c *Compiled) evaluateURI(u *url.URL) (*ruleText, Decision) {
	if why := checkURIName(u); why != "" {
		return nil, denied(ruleInvalidName, strconv.Quote(uriText(u))+" is not a valid URI name: "+why)
	}
	for i := range c.denyURI {
		if rule := &c.denyURI[i]; rule.matches(u) {
			return nil, deniedBy(&rule.ruleText, strconv.Quote(u.String()))
		}
	}
	for i := range c.allowURI {
		if rule := &c.allowURI[i]; rule.matches(u) {
			return &rule.ruleText, Decision{}
		}
	}
	return nil, defaultDeny("allow_uri", len(c.allowURI), strconv.Quote(u.String()))
}

func (c *Compiled) evaluateEmail(email string) (*ruleText, Decision) {
	if why := checkEmail(email); why != "" {
		return nil, denied(ruleInvalidName, strconv.Quote(email)+" is not a valid email address: "+why)
	}
	for i := range c.denyEmail {
		if rule := &c.denyEmail[i]; rule.matches(email) {
			return nil, deniedBy(&rule.ruleText, strconv.Quote(email))
		}
	}
	for i := range c.allowEmail {
		if rule := &c.allowEmail[i]; rule.matches(email) {
			return &rule.ruleText, Decision{}
		}
	}
	return nil, defaultDeny("allow_email", len(c.allowEmail), strconv.Quote(email))
}

func denied(rule, reason string) Decision {
	return Decision{Rule: rule, Reason: reason}
}

// deniedBy is the decision of a deny rule; quoted is the quoted name.
func deniedBy(rule *ruleText, quoted string) Decision {
	return denied(rule.label, quoted+" is denied by "+rule.phrase)
}

// defaultDeny is the decision for a name that no allow rule covers.
func defaultDeny(field string, rules int, quoted string) Decision {
	reason := "no " + field + " rule covers " + quoted
	if rules == 0 {
		reason += " (the policy has no " + field + " rules)"
	}
	return denied(ruleDefaultDeny, reason)
}

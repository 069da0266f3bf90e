package notify

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// DefaultRepeat is how often a firing alert is sent again.
const DefaultRepeat = 24 * time.Hour

// RuleSpec says which certificates and findings a rule alerts on. Zero
// fields match everything.
type RuleSpec struct {
	// Names are globs (path.Match: '*' does not cross '.') matched against
	// the subject's common name and every SAN; any may match.
	Names []string `json:"names,omitempty"`
	// Source is "issued" or "scanned".
	Source string `json:"source,omitempty"`
	// Issuers are globs matched against the issuer (its DN for scanned
	// certificates, the meshpki issuer name for issued ones).
	Issuers []string `json:"issuers,omitempty"`
	// Labels must all be on the certificate with these values: the labels
	// of the scan that saw it, or provisioner=NAME for an issued one.
	Labels map[string]string `json:"labels,omitempty"`
	// Checks are the check ids that alert (default: all).
	Checks []string `json:"checks,omitempty"`
	// Within, if set, makes expires_soon alert only once a certificate
	// expires within it (thresholds above it do not alert).
	Within policy.Duration `json:"within,omitempty"`
	// MinSeverity is the least severity that alerts (default warning).
	MinSeverity string `json:"min_severity,omitempty"`
	// Repeat is how often a firing alert is sent again (default 24h).
	Repeat policy.Duration `json:"repeat,omitempty"`
}

// Check validates the spec.
func (r RuleSpec) Check() error {
	for _, g := range slices.Concat(r.Names, r.Issuers) {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("glob %q: %v", ca.Clip(g), err)
		}
	}
	if err := monitor.CheckLabels(r.Labels); err != nil {
		return err
	}
	switch r.Source {
	case "", string(store.SourceIssued), string(store.SourceScanned):
	default:
		return fmt.Errorf("source %q: use issued or scanned", ca.Clip(r.Source))
	}
	for _, c := range r.Checks {
		if !slices.Contains(monitor.Checks, c) {
			return fmt.Errorf("check %q is not one of %s", ca.Clip(c), strings.Join(monitor.Checks, ", "))
		}
	}
	if r.MinSeverity != "" {
		if _, err := monitor.ParseSeverity(r.MinSeverity); err != nil {
			return err
		}
	}
	if r.Within < 0 || (r.Repeat != 0 && r.Repeat.Std() < time.Minute) {
		return fmt.Errorf("within must be positive and repeat at least 1m")
	}
	return nil
}

func (r RuleSpec) repeat() time.Duration {
	if r.Repeat > 0 {
		return r.Repeat.Std()
	}
	return DefaultRepeat
}

func (r RuleSpec) minSeverity() monitor.Severity {
	if s, err := monitor.ParseSeverity(r.MinSeverity); err == nil {
		return s
	}
	return monitor.Warning
}

// subject is what rules match a certificate by.
type subject struct {
	key       string // the alert's certificate: "issued:<serial>", "scanned:<fp>", "ca:<name>"
	source    string // issued, scanned or ca
	names     []string
	issuer    string
	notAfter  time.Time
	labels    map[string]string
	summaryOf string // how a summary names it
}

// matches reports whether the rule applies to sub.
func (r RuleSpec) matches(sub subject) bool {
	if r.Source != "" && r.Source != sub.source {
		return false
	}
	if len(r.Names) > 0 && !anyGlob(r.Names, sub.names) {
		return false
	}
	if len(r.Issuers) > 0 && !anyGlob(r.Issuers, []string{sub.issuer}) {
		return false
	}
	for k, v := range r.Labels {
		if sub.labels[k] != v {
			return false
		}
	}
	return true
}

// alerts reports whether the rule alerts on finding f.
func (r RuleSpec) alerts(f monitor.Finding, left time.Duration) bool {
	if len(r.Checks) > 0 && !slices.Contains(r.Checks, f.Check) {
		return false
	}
	if f.Severity < r.minSeverity() {
		return false
	}
	if f.Check == monitor.CheckExpiresSoon && r.Within > 0 && left > r.Within.Std() {
		return false
	}
	return true
}

func anyGlob(globs, values []string) bool {
	for _, g := range globs {
		for _, v := range values {
			if ok, _ := path.Match(g, v); ok {
				return true
			}
		}
	}
	return false
}

// ParseRule reads a stored rule's spec.
func ParseRule(r store.AlertRule) (RuleSpec, error) {
	var spec RuleSpec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		return spec, fmt.Errorf("rule %s: %w", r.Name, err)
	}
	return spec, nil
}

// builtinRule is what every default channel gets without configuration:
// the CA's own root and intermediates, and every issued certificate whose
// renewal is overdue or that expired in service.
const builtinRule = "builtin"

func builtinSpec() RuleSpec {
	return RuleSpec{MinSeverity: "warning"}
}

// builtinApplies reports whether the built-in rule alerts on f for sub.
func builtinApplies(sub subject, f monitor.Finding) bool {
	switch sub.source {
	case "ca":
		return monitor.TimeBound(f.Check)
	case string(store.SourceIssued):
		return f.Check == monitor.CheckRenewalOverdue || f.Check == monitor.CheckExpired
	}
	return false
}

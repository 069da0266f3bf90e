package declared

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// Condition is one observation of a certificate, in the shape of a
// Kubernetes condition (and cert-manager's Certificate conditions).
type Condition struct {
	Type               string    `json:"type"`   // Ready, Issuing or HooksSucceeded
	Status             string    `json:"status"` // "True", "False" or "Unknown"
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Condition types.
const (
	// Ready: the files hold an unexpired certificate issued for the
	// manifest as it is now.
	ConditionReady = "Ready"
	// Issuing: an issuance is due or failing, and will be tried (again).
	ConditionIssuing = "Issuing"
	// HooksSucceeded: every hook of the last issuance succeeded.
	ConditionHooks = "HooksSucceeded"
)

// HookStatus is how one hook of the last issuance went.
type HookStatus struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Skipped  bool          `json:"skipped,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// CertificateStatus is the state of one declared certificate, as
// 'meshpki agent status' shows it.
type CertificateStatus struct {
	Name       string    `json:"name"` // namespace/name, or name
	File       string    `json:"file"`
	Line       int       `json:"line"`
	SecretName string    `json:"secretName"`
	Dir        string    `json:"dir"`
	Issuer     string    `json:"issuer"` // KIND/NAME
	Ready      bool      `json:"ready"`
	Serial     string    `json:"serial,omitempty"`
	NotBefore  time.Time `json:"notBefore,omitzero"`
	NotAfter   time.Time `json:"notAfter,omitzero"`
	// RenewalTime is when the next issuance is due (or retried).
	RenewalTime time.Time `json:"renewalTime,omitzero"`
	// LastRenewal is when the files were last switched to a new issuance.
	LastRenewal            time.Time    `json:"lastRenewalTime,omitzero"`
	Revision               int          `json:"revision"` // issuances written since the agent started
	FailedIssuanceAttempts int          `json:"failedIssuanceAttempts,omitempty"`
	LastFailureTime        time.Time    `json:"lastFailureTime,omitzero"`
	LastFailure            string       `json:"lastFailure,omitempty"`
	Hooks                  []HookStatus `json:"lastHooks,omitempty"`
	Conditions             []Condition  `json:"conditions"`
	// IssuedFor fingerprints the manifest the files were issued for, so
	// that a restart knows whether the manifest changed since.
	IssuedFor string `json:"issuedFor,omitempty"`
}

// ManifestError is a manifest file that could not be read: the
// certificates it declared before keep their last good declaration.
type ManifestError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// Report is what the agent records in its data directory (StatusFile).
type Report struct {
	Dir          string              `json:"manifests"`
	Certificates []CertificateStatus `json:"certificates"`
	Errors       []ManifestError     `json:"errors,omitempty"`
	Warnings     []string            `json:"warnings,omitempty"`
	UpdatedAt    time.Time           `json:"updatedAt"`
}

// StatusFile is the report's name in the agent's data directory.
const StatusFile = "declared.json"

// ReadReport reads the report an agent wrote to path.
func ReadReport(path string) (Report, error) {
	var r Report
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("declared: %s: %w", path, err)
	}
	return r, nil
}

func writeReport(path string, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return keys.WriteFile(path, append(data, '\n'), 0o600)
}

// setCondition sets one condition, keeping its transition time unless its
// status changed.
func (s *CertificateStatus) setCondition(typ, status, reason, msg string, now time.Time) {
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
}

// clone copies s with slices of its own, for readers on other goroutines.
func (s CertificateStatus) clone() CertificateStatus {
	s.Conditions = slices.Clone(s.Conditions)
	s.Hooks = slices.Clone(s.Hooks)
	return s
}

// Condition returns the condition of type typ, if set.
func (s CertificateStatus) Condition(typ string) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

func boolStatus(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

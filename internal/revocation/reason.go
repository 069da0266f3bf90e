package revocation

import (
	"fmt"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/crlset"
)

// Reason is an RFC 5280 (section 5.3.1) CRLReason code.
type Reason int

// The CRLReason codes. 7 is not used.
const (
	Unspecified          Reason = 0
	KeyCompromise        Reason = 1
	CACompromise         Reason = 2
	AffiliationChanged   Reason = 3
	Superseded           Reason = 4
	CessationOfOperation Reason = 5
	CertificateHold      Reason = 6
	RemoveFromCRL        Reason = 8
	PrivilegeWithdrawn   Reason = 9
	AACompromise         Reason = 10
)

// reasonNames are the RFC 5280 names, which relying parties (crlset)
// print too.
var reasonNames = func() map[Reason]string {
	m := map[Reason]string{}
	for code, name := range crlset.ReasonNames {
		if name != "" {
			m[Reason(code)] = name
		}
	}
	return m
}()

// Accepted are the reasons a revocation may give, in code order.
// removeFromCRL only ever appears in delta CRLs, which meshpki does not
// make.
var Accepted = []Reason{Unspecified, KeyCompromise, CACompromise, AffiliationChanged, Superseded,
	CessationOfOperation, CertificateHold, PrivilegeWithdrawn, AACompromise}

// Subscriber are the reasons a certificate's subscriber may give through
// ACME (RFC 8555, section 7.6, following the CA/Browser Forum's list for
// subscribers): the others speak for a CA or an attribute authority.
var Subscriber = []Reason{Unspecified, KeyCompromise, AffiliationChanged, Superseded, CessationOfOperation, PrivilegeWithdrawn}

// String is the RFC 5280 name, e.g. "keyCompromise", or "reason-N".
func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason-%d", int(r))
}

// Names returns the names of the reasons in rs.
func Names(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// ParseReason maps a name of an Accepted reason, matched without regard to
// case, to its Reason; "" means Unspecified.
func ParseReason(name string) (Reason, error) {
	if name == "" {
		return Unspecified, nil
	}
	for _, r := range Accepted {
		if strings.EqualFold(r.String(), name) {
			return r, nil
		}
	}
	return 0, &ca.Error{Kind: ca.KindBadRequest, Msg: fmt.Sprintf("unknown revocation reason %q (use %s)", ca.Clip(name), strings.Join(Names(Accepted), ", "))}
}

package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// Provisioner returns a provisioner and its compiled policy, from the same
// short-lived cache the issuance path reads. KindNotFound if absent.
func (a *Authority) Provisioner(ctx context.Context, name string) (store.Provisioner, *policy.Compiled, error) {
	p, err := a.provs.Provisioner(ctx, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Provisioner{}, nil, errorf(KindNotFound, "no provisioner named %q", name)
		}
		return store.Provisioner{}, nil, storeErr(err, "read provisioner")
	}
	return p.Provisioner, p.Policy, nil
}

// CheckNames decides whether a provisioner's policy allows req (names, a
// lifetime — 0 for the default — and a key type, if known), as issuance
// would, and returns the decision; the CA's reserved namespace is refused as
// issuance refuses it. Nothing is issued or audited: front doors call it to
// refuse early what issuance would refuse anyway, and `meshpki policy
// check` to ask.
func (a *Authority) CheckNames(ctx context.Context, provisioner string, req policy.Request) (policy.Decision, error) {
	_, compiled, err := a.Provisioner(ctx, provisioner)
	if err != nil {
		return policy.Decision{}, err
	}
	if reserved, ok := a.reservedName(req.Names); ok {
		return policy.Decision{Rule: "reserved " + a.ReservedPrefix(), Reason: strconv.Quote(reserved) + " is reserved for the CA's own identities"}, nil
	}
	return compiled.Evaluate(req), nil
}

// OrderRequest asks for the certificate of a validated order (ACME): the
// names are those whose control was proven, the CSR must ask for exactly
// them.
type OrderRequest struct {
	Provisioner string
	CSR         []byte       // DER
	Names       policy.Names // the validated identifiers
	// NotBefore and NotAfter are the validity the order asked for; zero
	// for the provisioner's default.
	NotBefore, NotAfter time.Time
	Actor               string            // who asked, for the audit log
	Detail              map[string]string // extra audit detail (the order id)
	// OrderID is the ACME order the certificate finalizes: it moves from
	// ready to valid in the certificate's own transaction, and a
	// KindConflict error says it was no longer ready.
	OrderID string
}

// SignOrder checks the CSR against the validated names and issues through
// the one issuance path: the provisioner's policy decides, the certificate
// and its audit record are committed before it returns.
func (a *Authority) SignOrder(ctx context.Context, req OrderRequest) (*Issued, error) {
	prov, err := a.provs.Provisioner(ctx, req.Provisioner)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, a.deny(ctx, errorf(KindUnauthorized, "provisioner %q no longer exists", req.Provisioner), req.Actor, "", nil)
		}
		return nil, storeErr(err, "read provisioner")
	}
	csr, kt, subject, cerr := checkOrderCSR(req.CSR, req.Names)
	if cerr != nil {
		return nil, a.deny(ctx, cerr, req.Actor, "", req.Detail)
	}
	if !req.NotBefore.IsZero() && !req.NotAfter.IsZero() && !req.NotAfter.After(req.NotBefore) {
		return nil, a.deny(ctx, errorf(KindBadRequest, "notAfter is not after notBefore"), req.Actor, subject, req.Detail)
	}
	return a.issue(ctx, grant{
		kind:        grantProvisioner,
		provisioner: prov,
		subject:     subject,
		names:       req.Names,
		publicKey:   csr.PublicKey,
		keyType:     kt,
		actor:       req.Actor,
		notBefore:   req.NotBefore,
		notAfter:    req.NotAfter,
		eventType:   audit.TypeCertificateIssued,
		detail:      req.Detail,
		acmeOrder:   req.OrderID,
	})
}

// CheckOrderCSR checks a DER CSR for an order without issuing: it parses,
// its signature verifies, its key type is supported, it asks for exactly
// names, and its common name, if any, is one of them. SignOrder checks the
// same; a front door calls this first to refuse a wrong CSR before it
// changes any state.
func CheckOrderCSR(der []byte, names policy.Names) error {
	if _, _, _, err := checkOrderCSR(der, names); err != nil {
		return err
	}
	return nil
}

// checkOrderCSR returns the parsed CSR, its key type and the subject to
// use: its common name, else the first name.
func checkOrderCSR(der []byte, names policy.Names) (*x509.CertificateRequest, keys.KeyType, string, *Error) {
	csr, kt, err := parseCSRDER(der)
	if err != nil {
		return nil, "", "", err.(*Error)
	}
	asked := policy.NamesFromCSR(csr)
	if !sameNames(asked, names) {
		return nil, "", "", errorf(KindBadCSR, "the CSR names %s but the order's identifiers are %s",
			listOrNone(asked.Strings()), listOrNone(names.Strings()))
	}
	subject := csr.Subject.CommonName
	if subject != "" && !nameListed(names, subject) {
		return nil, "", "", errorf(KindBadCSR, "the CSR's common name %q is not one of the order's identifiers", subject)
	}
	if subject == "" {
		// The first identifier, as other ACME CAs do, so that tools which
		// show only the subject show something.
		if s := names.Strings(); len(s) > 0 {
			subject = s[0]
		}
	}
	return csr, kt, subject, nil
}

// sameNames reports whether a and b hold the same names, ignoring order,
// duplicates and the case of DNS names.
func sameNames(a, b policy.Names) bool {
	norm := func(n policy.Names) []string {
		s := n.Strings()
		for i := range s {
			s[i] = strings.ToLower(s[i])
		}
		slices.Sort(s)
		return slices.Compact(s)
	}
	return slices.Equal(norm(a), norm(b))
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "no names"
	}
	return strings.Join(s, ", ")
}

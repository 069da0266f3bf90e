package ca

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// DeclaredRequest asks for a certificate an attested node declared (a
// cert-manager Certificate manifest its agent read), through a node
// provisioner.
type DeclaredRequest struct {
	// Node is the calling node as the node API authenticated it: attested
	// and not evicted.
	Node        store.Node
	Provisioner string
	CSR         []byte        // DER; its names are the names asked for
	TTL         time.Duration // 0 for the provisioner's default
	// Manifest names the declaration for the audit log ("FILE: NAME").
	Manifest string
}

// SignDeclared issues the certificate a node declared through the one
// issuance path. At the moment of issuance the node provisioner as it is
// now must name the node (NodePattern) and its policy must allow every name,
// the lifetime and the key; deny wins. Refusals are audited with the rule
// that decided them.
func (a *Authority) SignDeclared(ctx context.Context, req DeclaredRequest) (*Issued, error) {
	actor := "node:" + req.Node.SPIFFEID
	detail := map[string]string{"provisioner": req.Provisioner, "node": req.Node.SPIFFEID}
	if req.Manifest != "" {
		detail["manifest"] = Clip(req.Manifest)
	}
	csr, kt, err := parseCSRDER(req.CSR)
	if err != nil {
		return nil, a.deny(ctx, err.(*Error), actor, "", detail)
	}
	names := policy.NamesFromCSR(csr)
	subject := csr.Subject.CommonName
	if subject != "" && !nameListed(names, subject) {
		return nil, a.deny(ctx, errorf(KindForbidden, "the CSR's common name %q is not one of its names; list it in dnsNames too", subject), actor, subject, detail)
	}
	if names.Len() == 0 {
		return nil, a.deny(ctx, errorf(KindBadRequest, "the CSR names nothing to certify"), actor, subject, detail)
	}
	if subject == "" {
		subject = names.Strings()[0]
	}
	prov, err := a.provs.Provisioner(ctx, req.Provisioner)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, a.deny(ctx, errorf(KindForbidden, "no provisioner named %q", req.Provisioner), actor, subject, detail)
		}
		return nil, storeErr(err, "read provisioner")
	}
	n := req.Node
	return a.issue(ctx, grant{
		kind:        grantProvisioner,
		provisioner: prov,
		requester:   &n,
		subject:     subject,
		names:       names,
		publicKey:   csr.PublicKey,
		keyType:     kt,
		ttl:         req.TTL,
		actor:       actor,
		eventType:   audit.TypeCertificateIssued,
		detail:      detail,
	})
}

// checkRequester decides whether the node asking (nil for every front door
// but the node API's declared certificates) may use provisioner p: a node
// provisioner serves only the nodes it names, and only nodes; every other
// type serves no node request.
func checkRequester(p store.Provisioner, n *store.Node) *Error {
	if p.Type != store.ProvisionerNode {
		if n == nil {
			return nil
		}
		return &Error{Kind: KindForbidden, Msg: "provisioner " + p.Name + " is of type " + string(p.Type) + "; nodes declare certificates through node provisioners only", Rule: "type " + string(p.Type)}
	}
	if n == nil {
		return &Error{Kind: KindForbidden, Msg: "certificates of node provisioner " + p.Name + " are issued and renewed only by the nodes it names, through their agents", Rule: "type node"}
	}
	if _, ok := NodePattern(p.Nodes, *n); !ok {
		return &Error{Kind: KindForbidden, Msg: "node " + n.SPIFFEID + " is not one of the nodes provisioner " + p.Name + " serves", Rule: "nodes"}
	}
	return nil
}

// NodePattern returns the first of patterns that n matches: its SPIFFE ID,
// a prefix "spiffe://td/path/*" of it (any depth below path), or one of its
// selectors.
func NodePattern(patterns []string, n store.Node) (string, bool) {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(p, "spiffe://") {
			if strings.HasPrefix(n.SPIFFEID, prefix+"/") {
				return p, true
			}
			continue
		}
		if p == n.SPIFFEID {
			return p, true
		}
		for _, sel := range n.Selectors {
			if sel == p {
				return p, true
			}
		}
	}
	return "", false
}

// CheckNodePattern checks one pattern of a node provisioner: a SPIFFE ID
// of this trust domain outside the reserved namespace, optionally ending in
// "/*", or a selector "TYPE:VALUE".
func (a *Authority) CheckNodePattern(p string) error {
	if strings.HasPrefix(p, "spiffe://") {
		id := strings.TrimSuffix(p, "/*")
		if _, err := a.ParseSPIFFEID(id); err != nil {
			return err
		}
		if sid, _ := spiffeid.FromString(id); sid.String() != id {
			return errorf(KindBadRequest, "node %q: write the SPIFFE ID as %s", Clip(p), sid)
		}
		return nil
	}
	typ, value, ok := strings.Cut(p, ":")
	if !ok || typ == "" || value == "" || strings.TrimFunc(typ, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' }) != "" {
		return errorf(KindBadRequest, "node %q is neither a SPIFFE ID (spiffe://TD/PATH, or ending in /*) nor a node selector (TYPE:VALUE)", Clip(p))
	}
	return nil
}

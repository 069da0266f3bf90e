package ca

import (
	"context"
	"crypto"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// grantKind says which front door authorised a grant, and so which policy
// the pipeline checks at issuance. There is no kind that skips policy.
type grantKind int

const (
	// grantProvisioner: a one-time token, an ACME order or a renewal of a
	// certificate a provisioner issued. Decided by that provisioner's
	// policy as it is now; the reserved namespace is never granted.
	grantProvisioner grantKind = iota + 1
	// grantWorkloadSVID: an X.509- or JWT-SVID of a registration entry.
	// Decided by the spiffe provisioners as they are now, so tightening one
	// stops existing entries from minting; never the reserved namespace.
	grantWorkloadSVID
	// grantNodeSVID: an attested node's own SVID. Exactly one SPIFFE ID of
	// this trust domain, outside the reserved namespace; nothing else.
	grantNodeSVID
	// grantSelf: one of the CA's own identities (its TLS certificate, an
	// admin credential) or a renewal of one. Every URI it carries must be
	// in the reserved namespace, so it can never mint a workload's identity.
	grantSelf
)

var grantKindNames = [...]string{"", "provisioner", "workload SVID", "node SVID", "CA identity"}

func (k grantKind) String() string {
	if int(k) < len(grantKindNames) {
		return grantKindNames[k]
	}
	return "unknown"
}

// grant is what a front door has authorised: the certificate to make (names,
// lifetime, key, issuer), the credential its issuance consumes, and the
// records that change with it. The pipeline (issue) decides it by its kind's
// policy, lints, signs, and commits the certificate, the credential, the
// side records and the audit event in one transaction.
type grant struct {
	kind        grantKind
	provisioner CompiledProvisioner // grantProvisioner only
	// requester is the attested node that declared the certificate, for a
	// node provisioner; nil at every other front door.
	requester  *store.Node
	tag        string // recorded as the provisioner of a certificate without one
	subject    string
	about      string // who the audit log says a refusal is about, when not subject
	names      policy.Names
	publicKey  crypto.PublicKey
	keyType    keys.KeyType
	ttl        time.Duration
	issuerName string // "" for the provisioner's issuer, else "default"
	// notBefore and notAfter, when set, are the validity asked for (ACME
	// orders); the lifetime they span is what policy decides on.
	notBefore, notAfter time.Time

	actor       string
	eventType   string
	renewedFrom store.Serial
	detail      map[string]string // extra audit detail

	// What the issuance consumes and changes, in its own transaction.
	tokenID    string        // a one-time or join token: a replay fails the issuance
	tokenExp   time.Time     //
	acmeOrder  string        // the ACME order this finalizes (ready → valid)
	node       *store.Node   // the node record this node SVID belongs to
	extraAudit []audit.Event // more records to append with the certificate's
}

// provisionerName is what the certificate records as its provisioner.
func (g *grant) provisionerName() string {
	if g.kind == grantProvisioner {
		return g.provisioner.Provisioner.Name
	}
	return g.tag
}

// decide checks g against its kind's policy now and returns the lifetime and
// issuer to use, or the refusal, audited. ttl is the lifetime asked for.
func (a *Authority) decide(ctx context.Context, g *grant, ttl time.Duration) (time.Duration, string, error) {
	provName := g.provisionerName()
	refuse := func(err *Error) (time.Duration, string, error) {
		about := g.subject
		if g.about != "" {
			about = g.about
		}
		return 0, "", a.deny(ctx, err, g.actor, about, g.refusalDetail(provName))
	}
	if g.kind != grantSelf {
		if reserved, ok := a.reservedName(g.names); ok {
			return refuse(a.reservedError(reserved))
		}
	}
	issuer := g.issuerName
	switch g.kind {
	case grantProvisioner:
		if err := checkRequester(g.provisioner.Provisioner, g.requester); err != nil {
			return refuse(err)
		}
		d := g.provisioner.Policy.Evaluate(policy.Request{Names: g.names, TTL: ttl, KeyType: g.keyType})
		if !d.Allowed {
			return refuse(&Error{Kind: KindForbidden, Msg: "policy of provisioner " + provName + " denies the request: " + d.Reason, Rule: d.Rule})
		}
		ttl = d.TTL
		if issuer == "" {
			issuer = g.provisioner.Policy.Policy().EffectiveIssuer()
		}
	case grantWorkloadSVID:
		// The entry was allowed when it was made; the spiffe provisioners
		// may have been tightened since. ttl 0 (a JWT-SVID, which may live
		// under policy's floor) asks about the names alone.
		if err := a.EntryPolicy(ctx, g.names, ttl); err != nil {
			if ce, ok := err.(*Error); ok && ce.Kind == KindForbidden {
				return refuse(ce)
			}
			return 0, "", err
		}
	case grantNodeSVID:
		if len(g.names.URIs) != 1 || len(g.names.DNS)+len(g.names.IPs)+len(g.names.Emails) > 0 ||
			!strings.EqualFold(g.names.URIs[0].Host, a.TrustDomain()) {
			return refuse(&Error{Kind: KindForbidden, Msg: "a node SVID carries exactly one SPIFFE ID of trust domain " + a.TrustDomain() + " and no other name", Rule: "node SVID"})
		}
	case grantSelf:
		prefix := a.ReservedPrefix()
		for _, u := range g.names.URIs {
			if !strings.HasPrefix(strings.ToLower(u.String()), prefix) {
				return refuse(&Error{Kind: KindForbidden, Msg: "a certificate for the CA's own identity carries URIs under " + prefix + " only, not " + u.String(), Rule: "CA identity"})
			}
		}
	default:
		return 0, "", errorf(KindInternal, "grant of unknown kind %d", g.kind)
	}
	if g.kind != grantProvisioner && ttl != 0 && ttl < policy.MinTTL {
		return 0, "", errorf(KindBadRequest, "lifetime %s is under the minimum of %s", ttl, policy.MinTTL)
	}
	if issuer == "" {
		issuer = "default"
	}
	return ttl, issuer, nil
}

// refusalDetail is the audit detail of a refusal of g.
func (g *grant) refusalDetail(provName string) map[string]string {
	detail := map[string]string{"names": strings.Join(g.names.Strings(), ",")}
	if provName != "" {
		detail["provisioner"] = provName
	}
	for k, v := range g.detail {
		detail[k] = v
	}
	return detail
}

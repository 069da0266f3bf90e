package ca

import (
	"context"
	"crypto/x509"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// SPIFFE lifetimes.
const (
	DefaultX509SVIDTTL = time.Hour
	DefaultJWTSVIDTTL  = 5 * time.Minute
	MaxSVIDTTL         = 7 * 24 * time.Hour
	MinJWTSVIDTTL      = time.Minute
	DefaultNodeSVIDTTL = 24 * time.Hour
	DefaultJoinTTL     = time.Hour
	MaxJoinTTL         = 7 * 24 * time.Hour
)

// Tags recorded as the provisioner of SPIFFE certificates, so that the node
// API can tell a node SVID from any other certificate with the same URI,
// and /v1/renew refuses them (they rotate through the agent).
const (
	NodeSVIDTag     = "spiffe:node"
	WorkloadSVIDTag = "spiffe:workload"
)

// TrustDomain returns the SPIFFE trust domain (no scheme).
func (a *Authority) TrustDomain() string { return a.h.TrustDomain() }

// JoinAudience is the audience of node join tokens.
func (a *Authority) JoinAudience() string {
	return strings.TrimSuffix(a.audience, "/v1/sign") + "/node"
}

// ParseSPIFFEID parses id and checks it is a workload or node ID of this
// trust domain, outside the CA's reserved namespace.
func (a *Authority) ParseSPIFFEID(id string) (spiffeid.ID, error) {
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return sid, errorf(KindBadRequest, "%q is not a SPIFFE ID: %v", id, err)
	}
	if sid.TrustDomain().Name() != a.TrustDomain() {
		return sid, errorf(KindBadRequest, "%s is not in this CA's trust domain %s", id, a.TrustDomain())
	}
	if sid.Path() == "" {
		return sid, errorf(KindBadRequest, "%s names the trust domain itself; a workload or node ID needs a path", id)
	}
	if strings.HasPrefix(sid.String()+"/", a.ReservedPrefix()) {
		return sid, &Error{Kind: KindForbidden, Msg: sid.String() + " is in the namespace reserved for the CA's own identities", Rule: "reserved " + a.ReservedPrefix()}
	}
	return sid, nil
}

// EntryPolicy decides an entry's names by the spiffe provisioners, if any:
// when an entry is made or changed (package registration), and again at
// every SVID minted for it.
func (a *Authority) EntryPolicy(ctx context.Context, names policy.Names, ttl time.Duration) error {
	provs, err := a.provs.OfType(ctx, store.ProvisionerSPIFFE)
	if err != nil {
		return storeErr(err, "list provisioners")
	}
	if len(provs) == 0 {
		return nil // no spiffe provisioner: the trust domain is the policy
	}
	var reasons []string
	for _, cp := range provs {
		d := cp.Policy.Evaluate(policy.Request{Names: names, TTL: ttl})
		if d.Allowed {
			return nil
		}
		reasons = append(reasons, cp.Provisioner.Name+": "+d.Reason)
	}
	return &Error{Kind: KindForbidden, Msg: "no spiffe provisioner allows " + strings.Join(names.Strings(), ", ") + " (" + strings.Join(reasons, "; ") + ")"}
}

// JoinGrant is a verified join token: the node it names and the token id
// that the node SVID's issuance consumes.
type JoinGrant struct {
	SPIFFEID string
	TokenID  string
	Expires  time.Time
}

// SVIDRequest asks for an X.509-SVID: a node SVID (Tag NodeSVIDTag) or a
// workload SVID of an entry (WorkloadSVIDTag). The caller (the node API) has
// decided the node may have it.
type SVIDRequest struct {
	SPIFFEID string
	DNSNames []string
	CSR      []byte // DER; only its key is used
	TTL      time.Duration
	Tag      string
	Actor    string
	Detail   map[string]string
	// JoinToken, when set, is consumed with the issuance: a replay fails it.
	JoinToken *JoinGrant
	// Node, when set (node SVIDs), is recorded with the certificate's serial
	// in the same transaction; an evicted node fails the issuance.
	Node *store.Node
	// Audit holds more records to append with the certificate's own.
	Audit []audit.Event
}

// SignSVID issues an X.509-SVID through the shared issuance step: recorded
// and audited before it returns.
func (a *Authority) SignSVID(ctx context.Context, req SVIDRequest) (*Issued, error) {
	sid, err := a.ParseSPIFFEID(req.SPIFFEID)
	if err != nil {
		return nil, err
	}
	csr, kt, err := parseCSRDER(req.CSR)
	if err != nil {
		return nil, err
	}
	names := policy.Names{URIs: []*url.URL{sid.URL()}}
	if len(req.DNSNames) > 0 {
		dns, err := policy.ParseNames(req.DNSNames)
		if err != nil {
			return nil, errorf(KindBadRequest, "%v", err)
		}
		names.DNS = dns.DNS
	}
	detail := map[string]string{"spiffe_id": sid.String()}
	for k, v := range req.Detail {
		detail[k] = v
	}
	kind := grantWorkloadSVID
	switch req.Tag {
	case WorkloadSVIDTag:
	case NodeSVIDTag:
		kind = grantNodeSVID
	default:
		return nil, errorf(KindInternal, "SVID tag %q is neither a node's nor a workload's", req.Tag)
	}
	p := grant{
		kind:       kind,
		tag:        req.Tag,
		about:      sid.String(),
		names:      names,
		publicKey:  csr.PublicKey,
		keyType:    kt,
		ttl:        req.TTL,
		actor:      req.Actor,
		eventType:  audit.TypeCertificateIssued,
		detail:     detail,
		node:       req.Node,
		extraAudit: req.Audit,
	}
	if jt := req.JoinToken; jt != nil {
		p.tokenID, p.tokenExp = jt.TokenID, jt.Expires
	}
	return a.issue(ctx, p)
}

// CheckNodeSVID checks a certificate presented on the node API: recorded by
// this CA as a node SVID, unrevoked and unexpired. It returns the node's
// SPIFFE ID.
func (a *Authority) CheckNodeSVID(ctx context.Context, cert *x509.Certificate) (string, error) {
	rec, err := a.CheckHolder(ctx, cert)
	if err != nil {
		return "", err
	}
	if rec.Provisioner != NodeSVIDTag || len(cert.URIs) != 1 {
		return "", errorf(KindUnauthorized, "certificate %s is not a node SVID", rec.Serial)
	}
	return cert.URIs[0].String(), nil
}

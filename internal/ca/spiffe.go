package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
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

// selectorTypes are the workload and node selector kinds entries may use,
// with the keys each knows.
var selectorTypes = map[string]map[string]bool{
	"unix":    {"uid": true, "gid": true, "user": true, "group": true, "path": true, "sha256": true},
	"x509pop": {"subject": true, "ca": true, "san": true},
}

// checkSelector checks one "type:key:value" selector.
func checkSelector(s string) error {
	typ, rest, ok := strings.Cut(s, ":")
	key, value, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || value == "" {
		return fmt.Errorf("selector %q is not type:key:value", s)
	}
	keys, known := selectorTypes[typ]
	if !known || !keys[key] {
		return fmt.Errorf("selector %q: unknown kind %s:%s (known: unix:uid, unix:gid, unix:user, unix:group, unix:path, unix:sha256, x509pop:subject, x509pop:ca, x509pop:san)", s, typ, key)
	}
	switch typ + ":" + key {
	case "unix:uid", "unix:gid":
		if _, err := strconv.ParseUint(value, 10, 32); err != nil {
			return fmt.Errorf("selector %q: %s must be a number", s, key)
		}
	case "unix:path":
		if !strings.HasPrefix(value, "/") {
			return fmt.Errorf("selector %q: the path must be absolute", s)
		}
	case "unix:sha256":
		if len(value) != 64 || strings.Trim(strings.ToLower(value), "0123456789abcdef") != "" {
			return fmt.Errorf("selector %q: sha256 must be 64 hex digits", s)
		}
	}
	return nil
}

// CheckEntry validates an entry, fills its defaults and decides it by policy:
// the SPIFFE ID must be in the trust domain and outside the reserved
// namespace, and, when provisioners of type spiffe exist, one of them must
// allow its ID, DNS names and X.509 lifetime.
func (a *Authority) CheckEntry(ctx context.Context, e store.Entry) (store.Entry, error) {
	sid, err := a.ParseSPIFFEID(e.SPIFFEID)
	if err != nil {
		return e, err
	}
	e.SPIFFEID = sid.String()
	switch {
	case e.Parent == "":
		return e, errorf(KindBadRequest, "an entry needs a parent: a node's SPIFFE ID or a node selector")
	case strings.HasPrefix(e.Parent, "spiffe://"):
		if _, err := a.ParseSPIFFEID(e.Parent); err != nil {
			return e, errorf(KindBadRequest, "parent: %s", err.(*Error).Msg)
		}
	default:
		if err := checkSelector(e.Parent); err != nil || !strings.HasPrefix(e.Parent, "x509pop:") {
			return e, errorf(KindBadRequest, "parent %q is neither a SPIFFE ID nor a node selector (x509pop:subject:cn:NAME, x509pop:ca:fingerprint:HEX, x509pop:san:dns:NAME)", e.Parent)
		}
	}
	if len(e.Selectors) == 0 {
		return e, errorf(KindBadRequest, "an entry needs at least one workload selector, e.g. unix:uid:1000")
	}
	sel := slices.Clone(e.Selectors)
	for i, s := range sel {
		sel[i] = strings.TrimSpace(s)
		if err := checkSelector(sel[i]); err != nil || !strings.HasPrefix(sel[i], "unix:") {
			if err == nil {
				err = fmt.Errorf("selector %q is not a workload (unix:) selector", sel[i])
			}
			return e, errorf(KindBadRequest, "%v", err)
		}
	}
	slices.Sort(sel)
	e.Selectors = slices.Compact(sel)
	if e.X509TTL == 0 {
		e.X509TTL = DefaultX509SVIDTTL
	}
	if e.JWTTTL == 0 {
		e.JWTTTL = DefaultJWTSVIDTTL
	}
	if e.X509TTL < policy.MinTTL || e.X509TTL > MaxSVIDTTL {
		return e, errorf(KindBadRequest, "X.509-SVID lifetime %s is outside %s to %s", e.X509TTL, policy.MinTTL, MaxSVIDTTL)
	}
	if e.JWTTTL < MinJWTSVIDTTL || e.JWTTTL > MaxSVIDTTL {
		return e, errorf(KindBadRequest, "JWT-SVID lifetime %s is outside %s to %s", e.JWTTTL, MinJWTSVIDTTL, MaxSVIDTTL)
	}
	names := policy.Names{URIs: []*url.URL{sid.URL()}}
	if len(e.DNSNames) > 0 {
		dns, err := policy.ParseNames(e.DNSNames)
		if err != nil || len(dns.DNS) != len(e.DNSNames) {
			return e, errorf(KindBadRequest, "dns names %v: each must be a DNS name", e.DNSNames)
		}
		names.DNS = dns.DNS
	}
	return e, a.entryPolicy(ctx, names, e.X509TTL)
}

// entryPolicy decides an entry's names by the spiffe provisioners, if any:
// when an entry is made or changed, and again at every SVID minted for it.
func (a *Authority) entryPolicy(ctx context.Context, names policy.Names, ttl time.Duration) error {
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

// checkSVIDNames decides an SVID's names at issuance: never the reserved
// namespace, and allowed by the spiffe provisioners now. Refusals are
// audited as actor's about subject.
func (a *Authority) checkSVIDNames(ctx context.Context, names policy.Names, ttl time.Duration, actor, subject string, detail map[string]string) error {
	if reserved, ok := a.reservedName(names); ok {
		return a.deny(ctx, a.reservedError(reserved), actor, subject, detail)
	}
	err := a.entryPolicy(ctx, names, ttl)
	var ce *Error
	if errors.As(err, &ce) && ce.Kind == KindForbidden {
		return a.deny(ctx, ce, actor, subject, detail)
	}
	return err
}

// CreateEntry checks and records a new registration entry.
func (a *Authority) CreateEntry(ctx context.Context, e store.Entry, actor string) (store.Entry, error) {
	e, err := a.CheckEntry(ctx, e)
	if err != nil {
		return e, a.denyEntry(ctx, err, actor, e)
	}
	e.ID = store.NewID()
	now := a.now()
	e.CreatedAt, e.UpdatedAt = now, now
	rev, err := a.st.CreateEntry(ctx, e, a.entryEvent(audit.TypeEntryCreated, actor, e, now))
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return e, errorf(KindConflict, "an entry for %s with the same parent and selectors exists", e.SPIFFEID)
		}
		return e, storeErr(err, "create entry")
	}
	e.Revision = rev
	return e, nil
}

// UpdateEntry checks and replaces an entry.
func (a *Authority) UpdateEntry(ctx context.Context, e store.Entry, actor string) (store.Entry, error) {
	old, err := a.st.GetEntry(ctx, e.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return e, errorf(KindNotFound, "no entry %s", e.ID)
		}
		return e, storeErr(err, "read entry")
	}
	e, err = a.CheckEntry(ctx, e)
	if err != nil {
		return e, a.denyEntry(ctx, err, actor, e)
	}
	e.CreatedAt, e.UpdatedAt = old.CreatedAt, a.now()
	rev, err := a.st.UpdateEntry(ctx, e, a.entryEvent(audit.TypeEntryUpdated, actor, e, e.UpdatedAt))
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return e, errorf(KindConflict, "an entry for %s with the same parent and selectors exists", e.SPIFFEID)
		}
		return e, storeErr(err, "update entry")
	}
	e.Revision = rev
	return e, nil
}

// DeleteEntry removes an entry; agents stop serving its SVID at their next
// sync.
func (a *Authority) DeleteEntry(ctx context.Context, id, actor string) error {
	now := a.now()
	ev := audit.Event{Time: now, Type: audit.TypeEntryDeleted, Actor: actor, Subject: id, Outcome: "success"}
	if _, err := a.st.DeleteEntry(ctx, id, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(KindNotFound, "no entry %s", id)
		}
		return storeErr(err, "delete entry")
	}
	return nil
}

func (a *Authority) entryEvent(typ, actor string, e store.Entry, now time.Time) audit.Event {
	return audit.Event{Time: now, Type: typ, Actor: actor, Subject: e.ID, Outcome: "success", Detail: map[string]string{
		"spiffe_id": e.SPIFFEID, "parent": e.Parent, "selectors": strings.Join(e.Selectors, ","),
		"x509_ttl": e.X509TTL.String(), "dns": strings.Join(e.DNSNames, ","),
	}}
}

// denyEntry audits a refused entry when policy refused it.
func (a *Authority) denyEntry(ctx context.Context, err error, actor string, e store.Entry) error {
	var ce *Error
	if errors.As(err, &ce) && ce.Kind == KindForbidden {
		return a.deny(ctx, ce, actor, e.SPIFFEID, map[string]string{"entry": e.ID})
	}
	return err
}

// CreateJoinToken mints a one-time token that lets one node attest as
// spiffeID.
func (a *Authority) CreateJoinToken(ctx context.Context, spiffeID string, ttl time.Duration, actor string) (TokenGrant, error) {
	sid, err := a.ParseSPIFFEID(spiffeID)
	if err != nil {
		return TokenGrant{}, err
	}
	if ttl == 0 {
		ttl = DefaultJoinTTL
	}
	if ttl < 0 || ttl > MaxJoinTTL {
		return TokenGrant{}, errorf(KindBadRequest, "join token lifetime %s is outside 0 to %s", ttl, MaxJoinTTL)
	}
	now := a.now()
	claims := token.Claims{ID: store.NewID(), Subject: sid.String(), Audience: a.JoinAudience(), Purpose: token.PurposeJoin, IssuedAt: now, NotBefore: now, Expiry: now.Add(ttl)}
	raw, err := a.keyring.Mint(claims)
	if err != nil {
		return TokenGrant{}, MintError(err)
	}
	ev := audit.Event{Time: now, Type: audit.TypeTokenCreated, Actor: actor, Subject: claims.ID, Outcome: "success",
		Detail: map[string]string{"purpose": token.PurposeJoin, "spiffe_id": sid.String(), "expires_at": claims.Expiry.UTC().Format(time.RFC3339)}}
	if err := a.commits.commit(ctx, store.Issuance{Audit: []audit.Event{ev}}); err != nil {
		return TokenGrant{}, storeErr(err, "audit token")
	}
	return TokenGrant{Token: raw, ID: claims.ID, ExpiresAt: claims.Expiry}, nil
}

// JoinGrant is a verified join token: the node it names and the token id
// that the node SVID's issuance consumes.
type JoinGrant struct {
	SPIFFEID string
	TokenID  string
	Expires  time.Time
}

// VerifyJoinToken checks a join token without consuming it: the issuance
// of the node SVID consumes it (SVIDRequest.JoinToken), in the same
// transaction as the certificate and the node record, so a failure between
// the two cannot waste the token or leave a node half attested.
func (a *Authority) VerifyJoinToken(ctx context.Context, raw string) (JoinGrant, error) {
	claims, err := a.keyring.Verify(raw, a.JoinAudience(), token.PurposeJoin, a.now())
	if err != nil {
		var te *token.Error
		msg := "invalid token"
		if errors.As(err, &te) {
			msg = strings.TrimPrefix(te.Error(), "token: ")
		}
		return JoinGrant{}, a.deny(ctx, errorf(KindUnauthorized, "join token rejected: %s", msg), "join-token", "", nil)
	}
	return JoinGrant{SPIFFEID: claims.Subject, TokenID: claims.ID, Expires: claims.Expiry}, nil
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
	if req.Tag == WorkloadSVIDTag {
		// Policy at issuance: an entry the spiffe provisioners allowed
		// when it was made may no longer be allowed.
		if err := a.checkSVIDNames(ctx, names, req.TTL, req.Actor, sid.String(), detail); err != nil {
			return nil, err
		}
	}
	p := issueParams{
		internal:   true,
		tag:        req.Tag,
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

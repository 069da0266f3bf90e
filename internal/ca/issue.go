package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/certlint"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/token"
)

// backdate is how far before "now" a leaf's NotBefore is set, so that a
// relying party whose clock is slightly behind still accepts it.
const backdate = time.Minute

// SignRequest asks for a certificate with a one-time token.
type SignRequest struct {
	CSR   []byte        // PEM "CERTIFICATE REQUEST"
	Token string        // compact JWT from CreateToken
	TTL   time.Duration // 0 for the provisioner's default
}

// Sign checks the token and the CSR, decides the names and lifetime by the
// provisioner's policy, signs, records and audits the certificate, and
// consumes the token, in that order. The certificate's names are the CSR's if
// it lists any (each must be granted by the token), else the token's.
func (a *Authority) Sign(ctx context.Context, req SignRequest) (*Issued, error) {
	now := a.now()
	claims, err := a.keyring.Verify(req.Token, a.audience, token.PurposeSign, now)
	if errors.Is(err, keys.ErrMACUnavailable) {
		return nil, &Error{Kind: KindUnavailable, Msg: "the token key's HSM or KMS is unavailable; try again", Err: err}
	}
	if err != nil {
		var te *token.Error
		msg := "invalid token"
		if errors.As(err, &te) {
			msg = strings.TrimPrefix(te.Error(), "token: ")
		}
		return nil, a.deny(ctx, errorf(KindUnauthorized, "token rejected: %s", msg), "token", "", nil)
	}
	actor := "token:" + claims.ID
	prov, err := a.provs.Provisioner(ctx, claims.Provisioner)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, a.deny(ctx, errorf(KindUnauthorized, "token rejected: provisioner %q no longer exists", claims.Provisioner), actor, claims.Subject, nil)
		}
		return nil, storeErr(err, "read provisioner")
	}
	// Checked now, not only when the token was made: the provisioner may
	// have been replaced by another of the same name since.
	if prov.Provisioner.Type != store.ProvisionerToken {
		return nil, a.deny(ctx, errorf(KindUnauthorized, "token rejected: provisioner %q is of type %s, and only token provisioners issue for tokens", claims.Provisioner, prov.Provisioner.Type), actor, claims.Subject, nil)
	}
	csr, kt, err := parseCSR(req.CSR)
	if err != nil {
		return nil, a.deny(ctx, err.(*Error), actor, claims.Subject, map[string]string{"provisioner": claims.Provisioner})
	}
	granted, perr := policy.ParseNames(claims.SANs)
	if perr != nil {
		return nil, a.deny(ctx, errorf(KindUnauthorized, "token rejected: %v", perr), actor, claims.Subject, nil)
	}
	names := granted
	if asked := policy.NamesFromCSR(csr); asked.Len() > 0 {
		if ok, missing := granted.Contains(asked); !ok {
			return nil, a.deny(ctx, errorf(KindForbidden, "the CSR asks for %q, which the token does not grant", missing), actor, claims.Subject, map[string]string{"provisioner": claims.Provisioner})
		}
		names = asked
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != claims.Subject && !nameListed(names, cn) {
		return nil, a.deny(ctx, errorf(KindForbidden, "the CSR's common name %q is neither the token's subject nor one of its names", cn), actor, claims.Subject, nil)
	}
	return a.issue(ctx, grant{
		kind:        grantProvisioner,
		provisioner: prov,
		subject:     claims.Subject,
		names:       names,
		publicKey:   csr.PublicKey,
		keyType:     kt,
		ttl:         req.TTL,
		actor:       actor,
		tokenID:     claims.ID,
		tokenExp:    claims.Expiry,
		eventType:   audit.TypeCertificateIssued,
	})
}

// RenewRequest asks for a fresh certificate with the identity of Current,
// which the caller presented over mTLS and whose chain TLS has verified.
type RenewRequest struct {
	Current *x509.Certificate
	CSR     []byte        // optional: a new key; its names are ignored
	TTL     time.Duration // shorter than the current lifetime, or 0 (and anything longer) keeps it
}

// Renew issues a certificate with the same subject, names, provisioner and
// issuer as the current one, after checking the current one is this CA's,
// unexpired and unrevoked, and that the provisioner's policy still allows it.
func (a *Authority) Renew(ctx context.Context, req RenewRequest) (*Issued, error) {
	cur := req.Current
	renewed := store.SerialOf(cur.SerialNumber)
	serial := string(renewed)
	actor := "cert:" + serial
	rec, err := a.CheckHolder(ctx, cur)
	if err != nil {
		return nil, a.deny(ctx, err.(*Error), actor, serial, nil)
	}
	publicKey := cur.PublicKey
	kt, kerr := keys.TypeOf(publicKey)
	if len(req.CSR) > 0 {
		csr, ckt, err := parseCSR(req.CSR)
		if err != nil {
			return nil, a.deny(ctx, err.(*Error), actor, serial, nil)
		}
		publicKey, kt, kerr = csr.PublicKey, ckt, nil
	}
	if kerr != nil {
		return nil, a.deny(ctx, wrapErr(KindBadKey, kerr, "%v", kerr), actor, serial, nil)
	}
	names := policy.Names{DNS: cur.DNSNames, IPs: cur.IPAddresses, URIs: cur.URIs, Emails: cur.EmailAddresses}
	lifetime := cur.NotAfter.Sub(cur.NotBefore) - backdate
	p := grant{
		subject:     cur.Subject.CommonName,
		names:       names,
		publicKey:   publicKey,
		keyType:     kt,
		ttl:         req.TTL,
		actor:       actor,
		renewedFrom: renewed,
		issuerName:  rec.Issuer,
		eventType:   audit.TypeCertificateRenewed,
	}
	if rec.Provisioner == "" {
		// An identity the CA issued to itself or its admins: same lifetime,
		// same names, no provisioner policy.
		if p.ttl == 0 || p.ttl > lifetime {
			p.ttl = lifetime
		}
		p.kind = grantSelf
		return a.issue(ctx, p)
	}
	prov, err := a.provs.Provisioner(ctx, rec.Provisioner)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, a.deny(ctx, errorf(KindForbidden, "provisioner %q that issued this certificate no longer exists", rec.Provisioner), actor, serial, nil)
		}
		return nil, storeErr(err, "read provisioner")
	}
	// A renewal never outlives the certificate it renews: a ttl asked for
	// is honoured only below that lifetime (RenewRequest.TTL).
	if p.ttl == 0 || p.ttl > lifetime {
		p.ttl = min(lifetime, prov.Policy.Policy().EffectiveMaxTTL())
		p.ttl = max(p.ttl, policy.MinTTL)
	}
	p.kind, p.provisioner = grantProvisioner, prov
	p.issuerName = "" // follow the provisioner's current issuer
	return a.issue(ctx, p)
}

// CheckHolder verifies that cert, presented over mTLS, is recorded by this
// CA, unrevoked and unexpired, and returns its record.
func (a *Authority) CheckHolder(ctx context.Context, cert *x509.Certificate) (store.Certificate, error) {
	serial := store.SerialOf(cert.SerialNumber)
	rec, err := a.st.GetCertificate(ctx, serial)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return rec, errorf(KindUnauthorized, "client certificate %s is not recorded by this CA", serial)
		}
		return rec, storeErr(err, "read certificate")
	}
	// The serial alone is not the certificate: another CA the server
	// trusts for client certificates (operators) could issue one with the
	// same serial.
	if !bytes.Equal(rec.DER, cert.Raw) {
		return rec, errorf(KindUnauthorized, "client certificate %s is not the certificate this CA issued with that serial", serial)
	}
	if rec.Status == store.StatusRevoked {
		return rec, errorf(KindUnauthorized, "client certificate %s is revoked", serial)
	}
	if now := a.now(); now.After(rec.NotAfter) {
		return rec, errorf(KindUnauthorized, "client certificate %s expired at %s", serial, rec.NotAfter.Format(time.RFC3339))
	}
	return rec, nil
}

// InternalRequest issues a certificate to the CA's own identities (the
// server's TLS certificate, admin certificates). No provisioner or token is
// involved; the request is recorded and audited like any other.
type InternalRequest struct {
	Subject   string
	Names     policy.Names
	PublicKey crypto.PublicKey
	TTL       time.Duration
	Actor     string // who asked, for the audit log ("system" by default)
}

// IssueInternal issues an internal certificate with the default issuer.
func (a *Authority) IssueInternal(ctx context.Context, req InternalRequest) (*Issued, error) {
	kt, err := keys.TypeOf(req.PublicKey)
	if err != nil {
		return nil, wrapErr(KindBadKey, err, "%v", err)
	}
	actor := req.Actor
	if actor == "" {
		actor = "system"
	}
	return a.issue(ctx, grant{
		kind:      grantSelf,
		subject:   req.Subject,
		names:     req.Names,
		publicKey: req.PublicKey,
		keyType:   kt,
		ttl:       req.TTL,
		actor:     actor,
		eventType: audit.TypeCertificateIssued,
	})
}

// issue is the pipeline every issuance goes through: policy at issuance by
// the grant's kind, lint, sign, and one commit of the certificate, the
// credential it consumes, its side records and its audit event.
func (a *Authority) issue(ctx context.Context, p grant) (*Issued, error) {
	provName := p.provisionerName()
	now := a.now()
	start := now.Add(-backdate)
	if !p.notBefore.IsZero() {
		start = p.notBefore
	}
	ttl := p.ttl
	if !p.notAfter.IsZero() {
		ttl = p.notAfter.Sub(now)
	}
	ttl, issuerName, err := a.decide(ctx, &p, ttl)
	if err != nil {
		return nil, err
	}
	iss, err := a.h.Issuer(issuerName)
	if err != nil {
		// Every generation revoked or expired: on a replica whose ca.json
		// predates the replacement, until it arrives.
		return nil, wrapErr(KindUnavailable, err, "intermediate %q has no generation that may sign now (revoked or expired); nothing was issued", Clip(issuerName))
	}
	var (
		pointers Pointers
		shard    int
	)
	if a.pointers != nil {
		pointers, shard = a.pointers.LeafPointers(iss, ttl)
	}
	cert, err := iss.SignLeaf(LeafRequest{
		Subject:   p.subject,
		Names:     p.names,
		PublicKey: p.publicKey,
		NotBefore: start,
		NotAfter:  now.Add(ttl),
		Pointers:  pointers,
	})
	if err != nil {
		if le := (*certlint.Error)(nil); errors.As(err, &le) {
			return nil, a.deny(ctx, &Error{Kind: KindForbidden, Msg: "refused to sign: " + le.Error(), Rule: "lint " + le.Findings[0].Lint, Err: err},
				p.actor, p.subject, map[string]string{"provisioner": provName, "names": strings.Join(p.names.Strings(), ",")})
		}
		return nil, wrapErr(KindInternal, err, "sign certificate")
	}
	serial := store.SerialOf(cert.SerialNumber)
	names := p.names.Strings()
	rec := store.Certificate{
		Serial:      serial,
		Provisioner: provName,
		Issuer:      iss.Name,
		// The generation and shard say which CRL lists it once revoked.
		IssuerGeneration: iss.Generation,
		CRLShard:         shard,
		Subject:          p.subject,
		Names:            names,
		NotBefore:        cert.NotBefore,
		NotAfter:         cert.NotAfter,
		DER:              cert.Raw,
		Status:           store.StatusValid,
		RenewedFrom:      p.renewedFrom,
		CreatedAt:        now,
	}
	detail := map[string]string{
		"names":     strings.Join(names, ","),
		"not_after": cert.NotAfter.UTC().Format(time.RFC3339),
		"issuer":    iss.Name,
		"key_type":  string(p.keyType),
	}
	if provName != "" {
		detail["provisioner"] = provName
	}
	if p.renewedFrom != "" {
		detail["renewed_from"] = string(p.renewedFrom)
	}
	for k, v := range p.detail {
		detail[k] = v
	}
	ev := audit.Event{Time: now, Type: p.eventType, Actor: p.actor, Subject: string(serial), Outcome: "success", Detail: detail}
	item := store.Issuance{TokenID: p.tokenID, TokenExpires: p.tokenExp, Certificate: &rec, ACMEOrder: p.acmeOrder,
		Audit: append([]audit.Event{ev}, p.extraAudit...)}
	if p.node != nil {
		n := *p.node
		n.CertSerial = serial
		item.Node = &n
	}
	err = a.commit(ctx, item)
	switch {
	case errors.Is(err, store.ErrTokenReplayed):
		return nil, a.deny(ctx, errorf(KindUnauthorized, "token rejected: it was already used"), p.actor, p.subject, nil)
	case errors.Is(err, store.ErrStateChanged) && p.node != nil:
		return nil, errorf(KindForbidden, "node %s is evicted", p.node.SPIFFEID)
	case errors.Is(err, store.ErrStateChanged):
		return nil, errorf(KindConflict, "order %s is no longer ready; its certificate was not issued", p.acmeOrder)
	case err != nil:
		return nil, storeErr(err, "record certificate")
	}
	return &Issued{Certificate: cert, Chain: iss.Chain(), Serial: serial, Record: rec}, nil
}

func nameListed(n policy.Names, name string) bool {
	for _, s := range n.Strings() {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// StoreError maps a store failure while doing what to an *Error, as the
// issuance path does.
func StoreError(err error, what string) *Error { return storeErr(err, what) }

// storeErr maps a store failure to an Error.
func storeErr(err error, what string) *Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return wrapErr(KindNotFound, err, "%s: not found", what)
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAlreadyRevoked):
		return wrapErr(KindConflict, err, "%s: %v", what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return wrapErr(KindUnavailable, err, "%s: request cancelled", what)
	}
	return wrapErr(KindUnavailable, err, "%s: the store failed", what)
}

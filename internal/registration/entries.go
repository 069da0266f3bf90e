package registration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

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

// checkEntry validates an entry, fills its defaults and decides it by policy:
// the SPIFFE ID must be in the trust domain and outside the reserved
// namespace, and, when provisioners of type spiffe exist, one of them must
// allow its ID, DNS names and X.509 lifetime.
func (s *Service) checkEntry(ctx context.Context, e store.Entry) (store.Entry, error) {
	sid, err := s.ca.ParseSPIFFEID(e.SPIFFEID)
	if err != nil {
		return e, err
	}
	e.SPIFFEID = sid.String()
	switch {
	case e.Parent == "":
		return e, ca.Errorf(ca.KindBadRequest, "an entry needs a parent: a node's SPIFFE ID or a node selector")
	case strings.HasPrefix(e.Parent, "spiffe://"):
		if _, err := s.ca.ParseSPIFFEID(e.Parent); err != nil {
			return e, ca.Errorf(ca.KindBadRequest, "parent: %s", err.(*ca.Error).Msg)
		}
	default:
		if err := checkSelector(e.Parent); err != nil || !strings.HasPrefix(e.Parent, "x509pop:") {
			return e, ca.Errorf(ca.KindBadRequest, "parent %q is neither a SPIFFE ID nor a node selector (x509pop:subject:cn:NAME, x509pop:ca:fingerprint:HEX, x509pop:san:dns:NAME)", e.Parent)
		}
	}
	if len(e.Selectors) == 0 {
		return e, ca.Errorf(ca.KindBadRequest, "an entry needs at least one workload selector, e.g. unix:uid:1000")
	}
	sel := slices.Clone(e.Selectors)
	for i, s := range sel {
		sel[i] = strings.TrimSpace(s)
		if err := checkSelector(sel[i]); err != nil || !strings.HasPrefix(sel[i], "unix:") {
			if err == nil {
				err = fmt.Errorf("selector %q is not a workload (unix:) selector", sel[i])
			}
			return e, ca.Errorf(ca.KindBadRequest, "%v", err)
		}
	}
	slices.Sort(sel)
	e.Selectors = slices.Compact(sel)
	if e.X509TTL == 0 {
		e.X509TTL = ca.DefaultX509SVIDTTL
	}
	if e.JWTTTL == 0 {
		e.JWTTTL = ca.DefaultJWTSVIDTTL
	}
	if e.X509TTL < policy.MinTTL || e.X509TTL > ca.MaxSVIDTTL {
		return e, ca.Errorf(ca.KindBadRequest, "X.509-SVID lifetime (x509_ttl) %s is outside %s to %s", e.X509TTL, policy.MinTTL, ca.MaxSVIDTTL)
	}
	if e.JWTTTL < ca.MinJWTSVIDTTL || e.JWTTTL > ca.MaxSVIDTTL {
		return e, ca.Errorf(ca.KindBadRequest, "JWT-SVID lifetime (jwt_ttl) %s is outside %s to %s", e.JWTTTL, ca.MinJWTSVIDTTL, ca.MaxSVIDTTL)
	}
	names := policy.Names{URIs: []*url.URL{sid.URL()}}
	if len(e.DNSNames) > 0 {
		dns, err := policy.ParseNames(e.DNSNames)
		if err != nil || len(dns.DNS) != len(e.DNSNames) {
			return e, ca.Errorf(ca.KindBadRequest, "dns names %v: each must be a DNS name", e.DNSNames)
		}
		names.DNS = dns.DNS
	}
	return e, s.ca.EntryPolicy(ctx, names, e.X509TTL)
}

// CreateEntry checks and records a new registration entry.
func (s *Service) CreateEntry(ctx context.Context, e store.Entry, actor string) (store.Entry, error) {
	e, err := s.checkEntry(ctx, e)
	if err != nil {
		return e, s.denyEntry(ctx, err, actor, e)
	}
	e.ID = store.NewID()
	now := s.now()
	e.CreatedAt, e.UpdatedAt = now, now
	rev, err := s.st.CreateEntry(ctx, e, s.entryEvent(audit.TypeEntryCreated, actor, e, now))
	return written(e, rev, err)
}

// written finishes CreateEntry and UpdateEntry: e at revision rev, or the
// error of the write.
func written(e store.Entry, rev int64, err error) (store.Entry, error) {
	switch {
	case errors.Is(err, store.ErrConflict):
		return e, ca.Errorf(ca.KindConflict, "an entry for %s with the same parent and selectors exists", e.SPIFFEID)
	case err != nil:
		return e, ca.StoreError(err, "write entry")
	}
	e.Revision = rev
	return e, nil
}

// UpdateEntry checks and replaces an entry.
func (s *Service) UpdateEntry(ctx context.Context, e store.Entry, actor string) (store.Entry, error) {
	old, err := s.st.GetEntry(ctx, e.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return e, ca.Errorf(ca.KindNotFound, "no entry %s", e.ID)
		}
		return e, ca.StoreError(err, "read entry")
	}
	e, err = s.checkEntry(ctx, e)
	if err != nil {
		return e, s.denyEntry(ctx, err, actor, e)
	}
	e.CreatedAt, e.UpdatedAt = old.CreatedAt, s.now()
	rev, err := s.st.UpdateEntry(ctx, e, s.entryEvent(audit.TypeEntryUpdated, actor, e, e.UpdatedAt))
	return written(e, rev, err)
}

// DeleteEntry removes an entry; agents stop serving its SVID at their next
// sync.
func (s *Service) DeleteEntry(ctx context.Context, id, actor string) error {
	now := s.now()
	ev := audit.Event{Time: now, Type: audit.TypeEntryDeleted, Actor: actor, Subject: id, Outcome: "success"}
	if _, err := s.st.DeleteEntry(ctx, id, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ca.Errorf(ca.KindNotFound, "no entry %s", id)
		}
		return ca.StoreError(err, "delete entry")
	}
	return nil
}

func (s *Service) entryEvent(typ, actor string, e store.Entry, now time.Time) audit.Event {
	return audit.Event{Time: now, Type: typ, Actor: actor, Subject: e.ID, Outcome: "success", Detail: map[string]string{
		"spiffe_id": e.SPIFFEID, "parent": e.Parent, "selectors": strings.Join(e.Selectors, ","),
		"x509_ttl": e.X509TTL.String(), "dns": strings.Join(e.DNSNames, ","),
	}}
}

// denyEntry audits a refused entry when policy refused it.
func (s *Service) denyEntry(ctx context.Context, err error, actor string, e store.Entry) error {
	var ce *ca.Error
	if errors.As(err, &ce) && ce.Kind == ca.KindForbidden {
		return s.ca.Refuse(ctx, ce, actor, e.SPIFFEID, map[string]string{"entry": e.ID})
	}
	return err
}

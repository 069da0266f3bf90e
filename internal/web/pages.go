package web

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/api"
	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/revocation"
	"github.com/meshpki/meshpki/internal/store"
)

// pageSize is how many inventory rows a page shows (and the store reads).
const pageSize = 50

func funcs(clock func() time.Time) template.FuncMap {
	return template.FuncMap{
		"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"expires": func(t time.Time) string {
			d := t.Sub(clock())
			if d < 0 {
				return "expired " + duration.Format(-d.Round(time.Minute)) + " ago"
			}
			return "expires in " + duration.Format(d.Round(time.Minute))
		},
	}
}

// row is one inventory line as the page shows it.
type row struct {
	store.InventoryItem
	Name, Link, Class string
}

func (s *Server) inventoryPage(w http.ResponseWriter, r *http.Request, sess session) {
	q := r.URL.Query()
	data := map[string]any{"Name": q.Get("name"), "Source": q.Get("source"), "Within": q.Get("within"), "Active": q.Get("active") == "1",
		"Overdue": q.Get("overdue") == "1",
		"Status":  q.Get("status"), "Issuer": q.Get("issuer"), "Provisioner": q.Get("provisioner"), "Serial": q.Get("serial")}
	now := s.cfg.Clock()
	f := store.InventoryFilter{Name: ca.Clip(q.Get("name")), Active: q.Get("active") == "1", After: q.Get("after"), Limit: pageSize,
		Issuer: ca.Clip(q.Get("issuer")), Provisioner: ca.Clip(q.Get("provisioner")), Now: now, RenewalOverdue: q.Get("overdue") == "1"}
	if serial := q.Get("serial"); serial != "" {
		sn, err := ca.ParseSerial(serial)
		if err != nil {
			data["Error"] = err.Error()
		}
		f.Serial = sn
	}
	switch st := store.Status(q.Get("status")); st {
	case "", store.StatusValid, store.StatusRevoked, store.StatusExpired:
		f.Status = st
	default:
		data["Error"] = fmt.Sprintf("status %q is not valid, revoked or expired", ca.Clip(string(st)))
	}
	// The expiry column's header turns the order round, keeping the
	// filters and starting again from the first page.
	sq := url.Values{}
	for k, v := range q {
		sq[k] = v
	}
	sq.Del("after")
	switch sort := q.Get("sort"); sort {
	case "", "soonest":
		sq.Set("sort", "latest")
	case "latest":
		f.LatestFirst = true
		sq.Del("sort")
		data["Sort"] = "latest"
	default:
		data["Error"] = fmt.Sprintf("sort %q is not soonest or latest", ca.Clip(sort))
	}
	data["SortLink"] = "/ui/inventory?" + sq.Encode()
	switch src := q.Get("source"); src {
	case "", "issued", "scanned":
		f.Source = store.InventorySource(src)
	default:
		data["Error"] = fmt.Sprintf("source %q is not issued or scanned", ca.Clip(src))
	}
	if within := q.Get("within"); within != "" {
		d, err := duration.Parse(within)
		if err != nil || d <= 0 {
			data["Error"] = fmt.Sprintf("expiring within %q: give a duration such as 7d or 12h", ca.Clip(within))
		} else {
			f.ExpiringBefore = now.Add(d)
		}
	}
	status := http.StatusOK
	if data["Error"] != nil {
		status = http.StatusBadRequest
	} else {
		items, next, err := s.cfg.Inventory.List(r.Context(), f)
		if err != nil {
			if errors.Is(err, store.ErrBadCursor) {
				data["Error"] = "this page no longer exists; start again from the first page"
				status = http.StatusBadRequest
			} else {
				s.readFailed(w, "inventory", "The inventory", err)
				return
			}
		}
		rows := make([]row, 0, len(items))
		for _, it := range items {
			rw := row{InventoryItem: it.InventoryItem, Name: it.Subject}
			if len(it.Names) > 0 {
				rw.Name = strings.Join(it.Names, ", ")
			}
			if it.Source == store.SourceIssued {
				rw.Link = "/ui/certificates/" + string(it.Serial)
			} else {
				rw.Link = "/ui/inventory/" + it.Fingerprint
			}
			switch {
			case it.Status == store.StatusRevoked:
				rw.Class = "revoked"
			case !it.NotAfter.After(now):
				rw.Class = "expired"
			case it.NotAfter.Sub(now) < 7*24*time.Hour:
				rw.Class = "soon"
			}
			rows = append(rows, rw)
		}
		data["Items"] = rows
		if next != "" {
			nq := url.Values{}
			for k, v := range q {
				nq[k] = v
			}
			nq.Set("after", next)
			data["Next"] = "/ui/inventory?" + nq.Encode()
		}
	}
	s.render(w, status, "inventory", data, sess)
}

// window is one "expires within" count of the overview.
type window struct {
	Label, Within string
	Count         int
}

// maxFiring caps the firing alerts the overview reads to count them.
const maxFiring = 1000

// overviewTTL is how long the overview's certificate counts are served
// before they are counted again. Counting what is in service reads every
// certificate's row (whether it was replaced is a join), which takes
// seconds at a million certificates: the counts are kept, served at once,
// and counted again in the background once older than this.
const overviewTTL = time.Minute

// overviewCounts are the overview's certificate counts at a moment.
type overviewCounts struct {
	Issued, Scanned int
	// Expired counts certificates in service whose notAfter has passed;
	// Overdue those past two thirds of their lifetime and not replaced;
	// IssuedDay those issued in the last 24 hours.
	Expired, Overdue, IssuedDay int
	Windows                     []window
	// Weeks are the expiry timeline's bars: in service, by week.
	Weeks []bar
	At    time.Time
}

// bar is one bar of the expiry timeline, laid out for the SVG.
type bar struct {
	Label         string
	Count         int
	X, Y, W, H    int
	LabelX, TextY int
}

// timelineWeeks is how far ahead the expiry timeline looks.
const timelineWeeks = 13

// layoutWeeks lays out weekly counts as bars in a 650 by 160 drawing.
func layoutWeeks(counts []int, now time.Time) []bar {
	highest := 1
	for _, c := range counts {
		highest = max(highest, c)
	}
	bars := make([]bar, len(counts))
	for i, c := range counts {
		h := c * 110 / highest // room above the tallest for its count
		x := 10 + i*49
		bars[i] = bar{Label: now.AddDate(0, 0, 7*i).UTC().Format("Jan 2"), Count: c, X: x, Y: 130 - h, W: 40, H: h, LabelX: x + 20, TextY: 126 - h}
	}
	return bars
}

// countOverview counts what the overview shows.
func (s *Server) countOverview(ctx context.Context) (*overviewCounts, error) {
	now := s.cfg.Clock()
	c := &overviewCounts{At: now, Windows: []window{{Label: "1 day", Within: "1d"}, {Label: "7 days", Within: "7d"}, {Label: "30 days", Within: "30d"}}}
	var err error
	if c.Issued, err = s.cfg.Store.CountInventory(ctx, store.InventoryFilter{Source: store.SourceIssued, Active: true}); err != nil {
		return nil, err
	}
	if c.Scanned, err = s.cfg.Store.CountInventory(ctx, store.InventoryFilter{Source: store.SourceScanned, Active: true}); err != nil {
		return nil, err
	}
	if c.Overdue, err = s.cfg.Store.CountInventory(ctx, store.InventoryFilter{Active: true, RenewalOverdue: true, Now: now}); err != nil {
		return nil, err
	}
	if c.IssuedDay, err = s.cfg.Store.CountInventory(ctx, store.InventoryFilter{Source: store.SourceIssued, IssuedSince: now.Add(-24 * time.Hour)}); err != nil {
		return nil, err
	}
	// One pass, by day, for the windows and the timeline.
	expired, days, err := s.cfg.Store.InventoryExpiries(ctx, store.InventoryFilter{Active: true}, now, 24*time.Hour, 7*timelineWeeks)
	if err != nil {
		return nil, err
	}
	c.Expired = expired
	sum := func(from, to int) int {
		n := 0
		for _, d := range days[from:to] {
			n += d
		}
		return n
	}
	for i, upTo := range []int{1, 7, 30} {
		c.Windows[i].Count = sum(0, upTo)
	}
	weeks := make([]int, timelineWeeks)
	for i := range weeks {
		weeks[i] = sum(7*i, 7*i+7)
	}
	c.Weeks = layoutWeeks(weeks, now)
	return c, nil
}

// overviewNow returns the kept counts, counting them first if there are
// none, and starting a recount in the background if they are stale.
func (s *Server) overviewNow(ctx context.Context) (*overviewCounts, error) {
	c := s.overview.Load()
	if c == nil {
		fresh, err := s.countOverview(ctx)
		if err != nil {
			return nil, err
		}
		s.overview.Store(fresh)
		return fresh, nil
	}
	if s.cfg.Clock().Sub(c.At) > overviewTTL && s.recounting.CompareAndSwap(false, true) {
		go func() {
			defer s.recounting.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fresh, err := s.countOverview(ctx)
			if err != nil {
				s.cfg.Logger.Error("web: recount the overview", "error", err)
				return
			}
			s.overview.Store(fresh)
		}()
	}
	return c, nil
}

// overviewPage shows what is in service and what expires soon (counts
// kept up to overviewTTL, see overviewNow), and how many alerts fire (read
// now, through the alerts' state index).
func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx := r.Context()
	counts, err := s.overviewNow(ctx)
	var firing []store.Alert
	if err == nil {
		firing, _, err = s.cfg.Store.ListAlerts(ctx, store.AlertFilter{State: store.AlertFiring, Limit: maxFiring})
	}
	if err != nil {
		s.readFailed(w, "overview", "The overview", err)
		return
	}
	s.render(w, http.StatusOK, "overview", map[string]any{"Issued": counts.Issued, "Scanned": counts.Scanned, "Windows": counts.Windows,
		"Expired": counts.Expired, "Overdue": counts.Overdue, "IssuedDay": counts.IssuedDay, "Weeks": counts.Weeks,
		"CountedAt": counts.At, "Firing": len(firing), "FiringCapped": len(firing) == maxFiring}, sess)
}

// scannedPage shows a scanned certificate: its fields, its findings as of
// now, and every place it was seen.
func (s *Server) scannedPage(w http.ResponseWriter, r *http.Request, sess session) {
	fp := r.PathValue("fingerprint")
	if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		s.message(w, http.StatusBadRequest, "Bad request", "A certificate fingerprint is 64 lowercase hexadecimal digits (SHA-256).")
		return
	}
	it, err := s.cfg.Inventory.GetScanned(r.Context(), fp)
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusNotFound, "Not found", "No scanned certificate "+fp+".")
		return
	}
	if err != nil {
		s.readFailed(w, "scanned certificate", "The certificate", err)
		return
	}
	s.render(w, http.StatusOK, "scanned", it, sess)
}

// certificateView is a certificate as its page shows it, decoded.
type certificateView struct {
	store.Certificate
	Generation int
	Reason     string
	Key        string
	Chain      []chainLink
	Reasons    []string
	Renewals   []store.Certificate
	// Fingerprint is the SHA-256 of the DER, the key scans file it under;
	// Sightings are where scans saw it.
	Fingerprint string
	Sightings   []store.Sighting
	Trail       []audit.Event
}

// chainLink is one certificate of a chain, leaf first.
type chainLink struct {
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
	// Download is where the issuer's certificate is served, if it is one
	// of ours; Note says what checking it found.
	Download string
	Note     string
}

// trailRows is how much of a certificate's audit trail its page shows.
const trailRows = 50

func (s *Server) certificatePage(w http.ResponseWriter, r *http.Request, sess session) {
	serial, err := ca.ParseSerial(r.PathValue("serial"))
	if err != nil {
		s.message(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	ctx := r.Context()
	c, err := s.cfg.Store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusNotFound, "Not found", "No certificate with serial "+string(serial)+".")
		return
	}
	if err != nil {
		s.readFailed(w, "certificate", "The certificate", err)
		return
	}
	v := certificateView{Certificate: c, Generation: c.IssuerGeneration, Reasons: revocation.Names(revocation.Accepted)}
	if c.Status == store.StatusRevoked {
		v.Reason = revocation.Reason(c.RevocationReason).String()
	}
	sum := sha256.Sum256(c.DER)
	v.Fingerprint = hex.EncodeToString(sum[:])
	if cert, err := x509.ParseCertificate(c.DER); err == nil {
		if kt, err := keys.TypeOf(cert.PublicKey); err == nil {
			v.Key = string(kt)
		}
		v.Chain = s.chain(cert, c)
	}
	// The rest are parts of the page; one that cannot be read leaves its
	// part empty rather than failing the page.
	if page, err := s.cfg.Store.ListCertificates(ctx, store.CertFilter{RenewedFrom: serial, Limit: 20}); err == nil {
		v.Renewals = page.Certificates
	}
	if _, sightings, err := s.cfg.Store.GetScanned(ctx, v.Fingerprint); err == nil {
		v.Sightings = sightings
	}
	if trail, err := s.cfg.Store.CertificateAudit(ctx, serial, trailRows); err == nil {
		v.Trail = trail
	}
	s.render(w, http.StatusOK, "certificate", v, sess)
}

// chain is cert's chain as the CA holds it: the leaf, the intermediate
// generation that signed it and the root, each checked against the next.
// Without the hierarchy (or for a generation it no longer loads) it is the
// leaf and its issuer's name.
func (s *Server) chain(cert *x509.Certificate, c store.Certificate) []chainLink {
	links := []chainLink{{Subject: cert.Subject.String() + " (this certificate)", NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}}
	var issuer *ca.Issuer
	if s.cfg.Hierarchy != nil {
		for _, is := range s.cfg.Hierarchy.Issuers() {
			if is.Name == c.Issuer && is.Generation == c.IssuerGeneration {
				issuer = is
				break
			}
		}
	}
	if issuer == nil {
		return append(links, chainLink{Subject: cert.Issuer.String(), Note: "not loaded by this server"})
	}
	link := chainLink{Subject: issuer.Cert.Subject.String(), NotBefore: issuer.Cert.NotBefore, NotAfter: issuer.Cert.NotAfter,
		Download: fmt.Sprintf("/intermediates/%s/%d.der", issuer.Name, issuer.Generation), Note: "signed the certificate above"}
	if err := cert.CheckSignatureFrom(issuer.Cert); err != nil {
		link.Note = "does not verify the certificate above: " + err.Error()
	}
	if !issuer.RevokedAt.IsZero() {
		link.Note += "; revoked by the root " + issuer.RevokedAt.UTC().Format(time.RFC3339)
	}
	links = append(links, link)
	root := s.cfg.Hierarchy.Root()
	rl := chainLink{Subject: root.Subject.String() + " (root)", NotBefore: root.NotBefore, NotAfter: root.NotAfter, Note: "signed the intermediate above"}
	if err := issuer.Cert.CheckSignatureFrom(root); err != nil {
		rl.Note = "does not verify the intermediate above: " + err.Error()
	}
	return append(links, rl)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, sess session) {
	if r.PostFormValue("confirm") != "yes" {
		s.message(w, http.StatusBadRequest, "Not revoked", "Tick the box that confirms the revocation.")
		return
	}
	reason, err := revocation.ParseReason(r.PostFormValue("reason"))
	if err != nil {
		s.message(w, http.StatusBadRequest, "Not revoked", err.Error())
		return
	}
	cert, _, err := s.cfg.Revocation.Revoke(r.Context(), revocation.Request{Serial: r.PathValue("serial"), Reason: reason, Actor: sess.Admin})
	if err != nil {
		s.message(w, api.StatusOf(err), "Not revoked", err.Error())
		return
	}
	http.Redirect(w, r, "/ui/certificates/"+string(cert.Serial), http.StatusSeeOther)
}

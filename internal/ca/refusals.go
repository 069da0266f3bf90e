package ca

import (
	"cmp"
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// MaxClientText is the most bytes of anything a client sent that is copied
// into an error message or an audit record; longer text is cut and marked.
const MaxClientText = 256

// Clip shortens client-supplied text to MaxClientText bytes (on a rune
// boundary), marking the cut with "…" and the original length.
func Clip(s string) string {
	if len(s) <= MaxClientText {
		return s
	}
	cut := MaxClientText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// RefusalWindow is how long repeated anonymous refusals from one source for
// one reason are counted before a single summary record is written.
const RefusalWindow = time.Minute

// maxRefusalKeys bounds the sources followed at once; past it, refusals
// from new sources are counted together under source "other".
const maxRefusalKeys = 4096

// refusals aggregates anonymous refusals so that a flood of bad requests
// costs the audit log one record per source, route and error per window:
// the first refusal is recorded as it happens, the rest of the window's
// are counted and summarised when the window ends.
type refusals struct {
	mu    sync.Mutex
	open  map[refusalKey]*refusalCount
	ended []endedWindow // windows with repeats, waiting for a summary
}

type refusalKey struct{ source, subject, code string }

type refusalCount struct {
	start    time.Time
	repeated int
	reason   string
}

type endedWindow struct {
	key refusalKey
	refusalCount
}

// note reports whether a refusal should be recorded now (the first of its
// window) and otherwise counts it.
func (r *refusals) note(k refusalKey, reason string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = map[refusalKey]*refusalCount{}
	}
	if _, known := r.open[k]; !known && len(r.open) >= maxRefusalKeys {
		k.source = "other"
	}
	if c, ok := r.open[k]; ok {
		if now.Sub(c.start) < RefusalWindow {
			c.repeated++
			return false
		}
		r.closeLocked(k, c)
	}
	r.open[k] = &refusalCount{start: now, reason: reason}
	return true
}

func (r *refusals) closeLocked(k refusalKey, c *refusalCount) {
	if c.repeated > 0 {
		r.ended = append(r.ended, endedWindow{k, *c})
	}
	delete(r.open, k)
}

// due returns the windows with repeats that ended by now (every open one
// when all is set), forgetting them.
func (r *refusals) due(now time.Time, all bool) []endedWindow {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.open {
		if all || now.Sub(c.start) >= RefusalWindow {
			r.closeLocked(k, c)
		}
	}
	out := r.ended
	r.ended = nil
	slices.SortFunc(out, func(x, y endedWindow) int {
		return cmp.Or(x.start.Compare(y.start), cmp.Compare(x.key.source, y.key.source),
			cmp.Compare(x.key.subject, y.key.subject), cmp.Compare(x.key.code, y.key.code))
	})
	return out
}

// summaries are the audit records for windows that ended.
func (a *Authority) refusalSummaries(now time.Time, all bool) []audit.Event {
	var evs []audit.Event
	for _, w := range a.refusals.due(now, all) {
		evs = append(evs, audit.Event{Time: now, Type: audit.TypeRequestDenied, Actor: "anonymous", Subject: w.key.subject, Outcome: "denied",
			Detail: map[string]string{"code": w.key.code, "source": w.key.source, "reason": w.reason, "repeated": strconv.Itoa(w.repeated),
				"window_start": w.start.UTC().Format(time.RFC3339)}})
	}
	return evs
}

// FlushRefusals writes a summary record for every aggregation window that
// has ended (every open one when all is set).
func (a *Authority) FlushRefusals(ctx context.Context, all bool) {
	evs := a.refusalSummaries(a.now(), all)
	if len(evs) == 0 {
		return
	}
	// Shutdown must not lose the counts: write past the end of ctx.
	if _, err := a.st.CommitIssuances(context.WithoutCancel(ctx), []store.Issuance{{Audit: evs}}); err != nil {
		a.log.Error("audit of repeated refusals failed", "error", err, "records", len(evs))
	}
}

// flushRefusalsLoop summarises ended windows every few seconds, and all of
// them when ctx ends.
func (a *Authority) flushRefusalsLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.FlushRefusals(ctx, true)
			return
		case <-t.C:
			a.FlushRefusals(ctx, false)
		}
	}
}

// sourceOf is the host of a remote address ("ip:port").
func sourceOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return Clip(remote)
}

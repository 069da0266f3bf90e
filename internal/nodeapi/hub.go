package nodeapi

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// hub follows the store's entry change log for every sync stream of this
// server: one query per poll interval (or per poke) whatever the number of
// agents, and each change batch fanned out to the streams, which keep what
// concerns their node. A stream too slow to keep up is told to resync.
type hub struct {
	st     Store
	poll   time.Duration
	bundle func() Bundle
	log    *slog.Logger
	pokeCh chan struct{}

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type hubMsg struct {
	changes []store.EntryChange
	bundle  *Bundle
	evicted string // a node evicted through this server
}

type subscriber struct {
	ch       chan hubMsg
	overflow chan struct{} // closed-or-signalled when messages were dropped
}

func newHub(st Store, poll time.Duration, bundle func() Bundle, log *slog.Logger) *hub {
	return &hub{st: st, poll: poll, bundle: bundle, log: log, pokeCh: make(chan struct{}, 1), subs: map[*subscriber]struct{}{}}
}

func (h *hub) subscribe() *subscriber {
	s := &subscriber{ch: make(chan hubMsg, 64), overflow: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func (h *hub) poke() {
	select {
	case h.pokeCh <- struct{}{}:
	default:
	}
}

func (h *hub) broadcast(m hubMsg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- m:
		default:
			select {
			case s.overflow <- struct{}{}:
			default:
			}
		}
	}
}

// run polls until ctx ends.
func (h *hub) run(ctx context.Context) {
	last, err := h.st.EntryRevision(ctx)
	if err != nil && ctx.Err() == nil {
		h.log.Warn("node API: reading the entry revision", "error", err)
	}
	digest := bundleDigest(h.bundle())
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.pokeCh:
		}
		if b := h.bundle(); bundleDigest(b) != digest {
			digest = bundleDigest(b)
			h.broadcast(hubMsg{bundle: &b})
		}
		cur, err := h.st.EntryRevision(ctx)
		if err != nil || cur <= last {
			continue
		}
		for last < cur {
			changes, now, err := h.st.EntryChanges(ctx, last, 1000)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Warn("node API: reading entry changes", "error", err)
				}
				// Streams rebuild from a snapshot.
				h.mu.Lock()
				for s := range h.subs {
					select {
					case s.overflow <- struct{}{}:
					default:
					}
				}
				h.mu.Unlock()
				last = cur
				break
			}
			if len(changes) == 0 {
				last = now
				break
			}
			h.broadcast(hubMsg{changes: changes})
			last = changes[len(changes)-1].Revision
		}
	}
}

// bundleDigest identifies a bundle's contents: a change of any authority or
// key changes it, even within the sequence number's one-second steps.
func bundleDigest(b Bundle) [32]byte {
	h := sha256.New()
	for _, der := range b.X509 {
		h.Write(der)
	}
	kids := make([]string, 0, len(b.JWTKeys))
	for kid := range b.JWTKeys {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	for _, kid := range kids {
		h.Write([]byte(kid))
		h.Write(b.JWTKeys[kid])
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

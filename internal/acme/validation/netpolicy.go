package validation

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/meshpki/meshpki/internal/netguard"
)

// Where validation may connect. The CA's own requests are a way into the
// network it sits in (server-side request forgery), so each connection is
// checked against the class of address it goes to:
//
//   - link-local addresses (169.254.0.0/16, fe80::/10, where cloud metadata
//     services live) are never connected to;
//   - the identifier's own addresses are otherwise connected to, loopback
//     and private ones included: policy granted the name, and the request
//     fetches only the fixed challenge path;
//   - a redirect never leads to loopback, and leads to a private address
//     (RFC 1918, RFC 6598 shared space, fc00::/7) only when the identifier
//     itself resolved to a private address — unless [Config.AllowRedirectTo]
//     names the network.
type addrClass = netguard.Class

const (
	classPrivate   = netguard.Private
	classLoopback  = netguard.Loopback
	classLinkLocal = netguard.LinkLocal
)

func classify(addr netip.Addr) addrClass { return netguard.Classify(addr) }

// fetchState follows one validation's connections: whether a redirect is
// being followed, and the class of the identifier's address connected to.
type fetchState struct {
	mu         sync.Mutex
	redirected bool
	origin     addrClass
}

type fetchStateKey struct{}

func withFetchState(ctx context.Context) context.Context {
	return context.WithValue(ctx, fetchStateKey{}, &fetchState{})
}

func fetchStateOf(ctx context.Context) *fetchState {
	st, _ := ctx.Value(fetchStateKey{}).(*fetchState)
	return st
}

// markRedirected records that later connections follow a redirect.
func (st *fetchState) markRedirected() {
	if st != nil {
		st.mu.Lock()
		st.redirected = true
		st.mu.Unlock()
	}
}

// connected records the address the identifier's own connection reached.
func (st *fetchState) connected(addr netip.Addr) {
	if st != nil {
		st.mu.Lock()
		if !st.redirected {
			st.origin = classify(addr)
		}
		st.mu.Unlock()
	}
}

// allowed reports whether addr may be connected to, and why not.
func (v *Validator) allowed(ctx context.Context, addr netip.Addr) (bool, string) {
	class := classify(addr)
	if class == classLinkLocal {
		return false, fmt.Sprintf("%s is %s, which validation never connects to", addr, class)
	}
	st := fetchStateOf(ctx)
	if st == nil {
		return true, ""
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.redirected {
		return true, ""
	}
	for _, p := range v.redirectAllow {
		if p.Contains(addr.Unmap()) {
			return true, ""
		}
	}
	switch {
	case class == classLoopback:
		return false, fmt.Sprintf("redirect to %s refused: it is %s", addr, class)
	case class == classPrivate && st.origin != classPrivate:
		return false, fmt.Sprintf("redirect to %s refused: it is %s and the identifier is not", addr, class)
	}
	return true, ""
}

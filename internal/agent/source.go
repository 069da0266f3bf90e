package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/nodeapi"
	"github.com/meshpki/meshpki/internal/workload"
)

var _ workload.Source = (*Agent)(nil)

// SVIDs implements workload.Source. They come oldest entry first, then by
// entry ID, so that a workload's default (first) SVID stays the same across
// responses, restarts and resyncs.
func (a *Agent) SVIDs() ([]workload.SVID, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	held := make([]*heldSVID, 0, len(a.svids))
	for _, h := range a.svids {
		held = append(held, h)
	}
	slices.SortFunc(held, func(x, y *heldSVID) int {
		if c := x.entry.CreatedAt.Compare(y.entry.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.entry.ID, y.entry.ID)
	})
	out := make([]workload.SVID, len(held))
	for i, h := range held {
		out[i] = workload.SVID{EntryID: h.entry.ID, SPIFFEID: h.entry.SPIFFEID, Selectors: h.entry.Selectors, Chain: h.chain, Key: h.key, Hint: h.entry.Hint}
	}
	return out, a.changed
}

// Bundles implements workload.Source.
func (a *Agent) Bundles() ([]workload.Bundle, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := workload.Bundle{TrustDomain: a.bundle.TrustDomain, JWTKeys: map[string]crypto.PublicKey{}}
	for _, der := range a.bundle.X509 {
		if c, err := x509.ParseCertificate(der); err == nil {
			b.X509Authorities = append(b.X509Authorities, c)
		}
	}
	for kid, der := range a.bundle.JWTKeys {
		if k, err := x509.ParsePKIXPublicKey(der); err == nil {
			b.JWTKeys[kid] = k
		}
	}
	if b.TrustDomain == "" {
		return nil, a.changed
	}
	return []workload.Bundle{b}, a.changed
}

// MintJWTSVID implements workload.Source: JWT-SVIDs are minted by the
// server on demand.
func (a *Agent) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, time.Time, error) {
	c := a.api()
	if c == nil {
		return "", time.Time{}, errors.New("agent is not connected")
	}
	resp, err := c.MintJWTSVID(ctx, &nodeapi.JWTRequest{EntryID: entryID, Audience: audience})
	if err != nil {
		return "", time.Time{}, err
	}
	return resp.Token, resp.Expiry, nil
}

package ca

import (
	"context"
	"errors"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// ListNodes returns every attested node, evicted ones included, ordered by
// SPIFFE ID.
func (a *Authority) ListNodes(ctx context.Context) ([]store.Node, error) {
	nodes, err := a.st.ListNodes(ctx)
	if err != nil {
		return nil, storeErr(err, "list nodes")
	}
	return nodes, nil
}

// EvictNode bans the node spiffeID: from now on it can no longer sync
// entries or get SVIDs minted, and it cannot attest again under that ID.
func (a *Authority) EvictNode(ctx context.Context, spiffeID, actor string) error {
	sid, err := a.ParseSPIFFEID(spiffeID)
	if err != nil {
		return err
	}
	ev := audit.Event{Time: a.now(), Type: audit.TypeNodeEvicted, Actor: actor, Subject: sid.String(), Outcome: "success"}
	if err := a.st.EvictNode(ctx, sid.String(), ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(KindNotFound, "no node %s has attested", sid)
		}
		return storeErr(err, "evict node")
	}
	return nil
}

package workload

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// FetchX509SVID streams the caller's X.509-SVIDs: now, and again whenever a
// Source change alters them. The caller is attested once, at the start.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	c, err := s.attest(ctx)
	if err != nil {
		return err
	}
	var last *workload.X509SVIDResponse
	for {
		snap := s.current()
		idx := snap.entitled(c.selectors)
		if len(idx) == 0 {
			return errNoIdentity(c)
		}
		resp := snap.x509SVIDResponse(idx)
		if resp != last && (last == nil || !proto.Equal(resp, last)) {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		last = resp
		if err := s.waitChange(ctx, snap); err != nil {
			return err
		}
	}
}

// waitChange waits for the Source to change after snap, for the client to go
// away, or for the server to stop.
func (s *Server) waitChange(ctx context.Context, snap *snapshot) error {
	select {
	case <-snap.svidsChanged:
		return nil
	case <-snap.bundlesChanged:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.stopping:
		return status.Error(codes.Unavailable, "workload: server is shutting down")
	}
}

// FetchX509Bundles streams every trust domain's X.509 authorities, again on
// every change.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	var last *workload.X509BundlesResponse
	for {
		snap := s.current()
		if resp := snap.x509BundlesResp; last == nil || !proto.Equal(resp, last) {
			if err := stream.Send(resp); err != nil {
				return err
			}
			last = resp
		}
		if err := s.waitChange(ctx, snap); err != nil {
			return err
		}
	}
}

// FetchJWTBundles streams every trust domain's JWT keys as JWKS documents,
// again on every change.
func (s *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	var last *workload.JWTBundlesResponse
	for {
		snap := s.current()
		if resp := snap.jwtBundlesResp; last == nil || !proto.Equal(resp, last) {
			if err := stream.Send(resp); err != nil {
				return err
			}
			last = resp
		}
		if err := s.waitChange(ctx, snap); err != nil {
			return err
		}
	}
}

// FetchJWTSVID mints a JWT-SVID for the audience for each SVID the caller is
// entitled to, or only for the requested SPIFFE ID.
func (s *Server) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	var want string
	if req.SpiffeId != "" {
		id, err := spiffeid.FromString(req.SpiffeId)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
		want = id.String()
	}
	c, err := s.attest(ctx)
	if err != nil {
		return nil, err
	}
	snap := s.current()
	idx := snap.entitled(c.selectors)
	if len(idx) == 0 {
		return nil, errNoIdentity(c)
	}
	resp := &workload.JWTSVIDResponse{}
	for _, i := range idx {
		v := &snap.svids[i]
		if want != "" && v.spiffeID != want {
			continue
		}
		token, _, err := s.src.MintJWTSVID(ctx, v.entryID, req.Audience)
		if err != nil {
			s.log.Error("workload api: minting JWT-SVID failed", "entry", v.entryID, "spiffe_id", v.spiffeID, "err", err)
			return nil, status.Errorf(codes.Unavailable, "workload: cannot mint a JWT-SVID for %s: %v", v.spiffeID, err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: v.spiffeID, Svid: token, Hint: v.x509.Hint})
	}
	if len(resp.Svids) == 0 {
		return nil, status.Errorf(codes.PermissionDenied,
			"no identity issued: this workload (uid %d, pid %d) is not entitled to %s", c.creds.UID, c.creds.PID, want)
	}
	return resp, nil
}

// ValidateJWTSVID verifies a JWT-SVID's signature against the JWT bundles and
// its audience and expiry. It needs no entitlement.
func (s *Server) ValidateJWTSVID(_ context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	switch {
	case req.Audience == "":
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	case req.Svid == "":
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	svid, err := jwtsvid.ParseAndValidate(req.Svid, s.current().jwtBundles, []string{req.Audience})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "jwtsvid: claims cannot be represented: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

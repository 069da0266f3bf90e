package nodeapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/registration"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Store is the part of the store the node API uses: reads of entries and
// nodes, and its consumed x509pop nonces. Nodes and certificates are
// written by the issuance path, entries by package registration.
type Store interface {
	store.EntryReader
	store.NodeReader
	store.Tokens // consumed x509pop nonces
}

// Config is what the node API server needs.
type Config struct {
	Authority *ca.Authority
	Store     Store
	// Registration verifies the join tokens nodes attest with.
	Registration *registration.Service
	// X509PoPRoots, if set, enables x509pop attestation of nodes whose
	// certificates chain to them.
	X509PoPRoots *x509.CertPool
	// Secret keys the x509pop nonces; replicas share it. At least 32 bytes
	// when X509PoPRoots is set.
	Secret keys.MAC
	// PollInterval is how often the server looks for entry changes made on
	// any replica (default 250ms): one cheap query per interval per server,
	// however many agents are connected.
	PollInterval time.Duration
	Logger       *slog.Logger
	Clock        func() time.Time
}

// Server is the node API's gRPC service.
type Server struct {
	ca           *ca.Authority
	st           Store
	registration *registration.Service
	// x509pop
	popRoots *x509.CertPool
	popKey   []byte
	hub      *hub
	log      *slog.Logger
	now      func() time.Time
	grpc     *grpc.Server
}

// New returns the node API; Run must be running for sync streams to see
// changes.
func New(cfg Config) (*Server, error) {
	if cfg.Authority == nil || cfg.Store == nil || cfg.Registration == nil {
		return nil, errors.New("nodeapi: Config needs Authority, Store and Registration")
	}
	s := &Server{ca: cfg.Authority, st: cfg.Store, registration: cfg.Registration, popRoots: cfg.X509PoPRoots, log: cfg.Logger, now: cfg.Clock}
	if s.popRoots != nil {
		if sec, ok := cfg.Secret.(keys.SecretMAC); cfg.Secret == nil || ok && len(sec) < 32 {
			return nil, errors.New("nodeapi: x509pop needs a Secret of at least 32 bytes")
		}
		key, err := cfg.Secret.MAC([]byte("meshpki x509pop nonce v1"))
		if err != nil {
			return nil, fmt.Errorf("nodeapi: derive the x509pop nonce key: %w", err)
		}
		s.popKey = key
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	s.hub = newHub(cfg.Store, poll, s.bundle, s.log)
	s.grpc = grpc.NewServer()
	s.grpc.RegisterService(&serviceDesc, s)
	return s, nil
}

// Run follows entry changes until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	s.hub.run(ctx)
	s.grpc.Stop()
	return nil
}

// GRPC is the gRPC server, to be served on the HTTPS port (ServeHTTP).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// NodeEvicted ends the sync stream of a node evicted through this replica
// at once; other replicas notice within their periodic recheck.
func (s *Server) NodeEvicted(spiffeID string) { s.hub.broadcast(hubMsg{evicted: spiffeID}) }

// EntriesChanged tells the server that entries changed through this
// replica, so that agents hear of it without waiting for the next poll.
func (s *Server) EntriesChanged() { s.hub.poke() }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		unary("Attest", (*Server).Attest),
		unary("X509PoPChallenge", (*Server).X509PoPChallenge),
		unary("MintX509SVIDs", (*Server).MintX509SVIDs),
		unary("MintJWTSVID", (*Server).MintJWTSVID),
		unary("RenewNode", (*Server).RenewNode),
		unary("SignDeclared", (*Server).SignDeclared),
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Sync",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			var in SyncRequest
			if err := stream.RecvMsg(&in); err != nil {
				return err
			}
			return srv.(*Server).Sync(&in, stream)
		},
	}},
}

// IsStream reports whether path (/service/method) names a streaming method
// of the node API, which must outlive any per-request timeout.
func IsStream(path string) bool {
	for _, sd := range serviceDesc.Streams {
		if path == "/"+ServiceName+"/"+sd.StreamName {
			return true
		}
	}
	return false
}

func unary[Req, Resp any](name string, f func(*Server, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		return f(srv.(*Server), ctx, in)
	}}
}

// grpcErr maps an issuance or store error to a gRPC status.
func grpcErr(err error) error {
	if _, ok := status.FromError(err); ok && !errors.As(err, new(*ca.Error)) {
		return err
	}
	var ce *ca.Error
	if errors.As(err, &ce) {
		code := map[ca.Kind]codes.Code{
			ca.KindBadRequest: codes.InvalidArgument, ca.KindBadCSR: codes.InvalidArgument, ca.KindBadKey: codes.InvalidArgument,
			ca.KindUnauthorized: codes.Unauthenticated, ca.KindForbidden: codes.PermissionDenied, ca.KindNotFound: codes.NotFound,
			ca.KindConflict: codes.AlreadyExists, ca.KindUnavailable: codes.Unavailable,
		}[ce.Kind]
		if code == codes.OK {
			code = codes.Internal
		}
		return status.Error(code, ce.Msg)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, "the store failed")
}

// Attest checks a node's proof — a join token, or an x509pop certificate
// and signature — and issues the node SVID.
func (s *Server) Attest(ctx context.Context, in *AttestRequest) (*AttestResponse, error) {
	var (
		id        string
		selectors []string
		method    string
		join      *ca.JoinGrant
		err       error
	)
	switch {
	case in.JoinToken != "" && in.X509PoP != nil:
		return nil, status.Error(codes.InvalidArgument, "give a join token or an x509pop proof, not both")
	case in.JoinToken != "":
		method = "join_token"
		g, err := s.registration.VerifyJoinToken(ctx, in.JoinToken)
		if err != nil {
			return nil, grpcErr(err)
		}
		id, join = g.SPIFFEID, &g
	case in.X509PoP != nil:
		method = "x509pop"
		if id, selectors, err = s.attestX509PoP(ctx, in.X509PoP); err != nil {
			return nil, err
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "attestation needs a join token or an x509pop proof")
	}
	if n, err := s.st.GetNode(ctx, id); err == nil && n.Evicted {
		return nil, s.refuse(ctx, codes.PermissionDenied, "node:"+id, "node "+id+" is evicted")
	}
	// The certificate, the node record, the consumed join token and both
	// audit records commit together.
	now := s.now()
	issued, err := s.ca.SignSVID(ctx, ca.SVIDRequest{SPIFFEID: id, CSR: in.CSR, TTL: ca.DefaultNodeSVIDTTL, Tag: ca.NodeSVIDTag, Actor: "node:" + id,
		JoinToken: join,
		Node:      &store.Node{SPIFFEID: id, Attestation: method, Selectors: selectors, CreatedAt: now, UpdatedAt: now},
		Audit: []audit.Event{{Time: now, Type: audit.TypeNodeAttested, Actor: "node:" + id, Subject: id, Outcome: "success",
			Detail: map[string]string{"attestation": method, "selectors": strings.Join(selectors, ",")}}}})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &AttestResponse{SPIFFEID: id, Chain: chainDER(issued), Bundle: s.bundle()}, nil
}

func chainDER(i *ca.Issued) [][]byte {
	out := [][]byte{i.Certificate.Raw}
	for _, c := range i.Chain {
		out = append(out, c.Raw)
	}
	return out
}

// node authenticates the caller by its node SVID and checks it is not
// evicted.
func (s *Server) node(ctx context.Context) (store.Node, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return store.Node{}, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return store.Node{}, s.refuse(ctx, codes.Unauthenticated, "anonymous", "the node API needs a node SVID as TLS client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	id, err := s.ca.CheckNodeSVID(ctx, leaf)
	if err != nil {
		// An evicted node's SVID is revoked with it: say evicted, which is
		// what the agent has to act on, rather than revoked.
		if sid, idErr := x509svid.IDFromCert(leaf); idErr == nil {
			if n, gerr := s.st.GetNode(ctx, sid.String()); gerr == nil && n.Evicted {
				return n, s.refuse(ctx, codes.PermissionDenied, "node:"+sid.String(), "node "+sid.String()+" is evicted")
			}
		}
		return store.Node{}, grpcErr(err)
	}
	n, err := s.st.GetNode(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return n, s.refuse(ctx, codes.PermissionDenied, "node:"+id, "node "+id+" is not attested")
	}
	if err != nil {
		return n, grpcErr(err)
	}
	if n.Evicted {
		return n, s.refuse(ctx, codes.PermissionDenied, "node:"+id, "node "+id+" is evicted")
	}
	return n, nil
}

// refuse audits a refusal of the node API that no issuance decided (those
// the issuance path audits itself) and returns it as a gRPC error.
func (s *Server) refuse(ctx context.Context, code codes.Code, actor, msg string) error {
	detail := map[string]string{"code": code.String()}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		detail["remote"] = p.Addr.String()
	}
	method, _ := grpc.Method(ctx)
	s.ca.RecordDenied(ctx, actor, "node API "+method, msg, detail)
	return status.Error(code, msg)
}

// applies reports whether an entry's parent names this node.
func applies(n store.Node, parent string) bool {
	if parent == n.SPIFFEID {
		return true
	}
	for _, sel := range n.Selectors {
		if sel == parent {
			return true
		}
	}
	return false
}

func toEntry(e store.Entry) Entry {
	return Entry{ID: e.ID, SPIFFEID: e.SPIFFEID, Selectors: e.Selectors, X509TTL: e.X509TTL, JWTTTL: e.JWTTTL, DNSNames: e.DNSNames, Hint: e.Hint, Revision: e.Revision, CreatedAt: e.CreatedAt}
}

// snapshot lists every entry that applies to n.
func (s *Server) snapshot(ctx context.Context, n store.Node) ([]Entry, error) {
	var out []Entry
	for _, parent := range append([]string{n.SPIFFEID}, n.Selectors...) {
		after := ""
		for {
			page, err := s.st.ListEntries(ctx, store.EntryFilter{Parent: parent, After: after, Limit: 1000})
			if err != nil {
				return nil, err
			}
			for _, e := range page {
				out = append(out, toEntry(e))
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	return out, nil
}

// Sync sends the node a snapshot of its entries, then every change that
// concerns it as the server learns of it, until the node goes away or is
// evicted.
func (s *Server) Sync(_ *SyncRequest, stream grpc.ServerStream) error {
	ctx := stream.Context()
	n, err := s.node(ctx)
	if err != nil {
		return err
	}
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	send := func(full bool) (map[string]bool, int64, error) {
		rev, err := s.st.EntryRevision(ctx)
		if err != nil {
			return nil, 0, grpcErr(err)
		}
		entries, err := s.snapshot(ctx, n)
		if err != nil {
			return nil, 0, grpcErr(err)
		}
		have := make(map[string]bool, len(entries))
		for _, e := range entries {
			have[e.ID] = true
		}
		b := s.bundle()
		return have, rev, stream.SendMsg(&SyncResponse{Full: full, Entries: entries, Revision: rev, Bundle: &b})
	}
	have, rev, err := send(true)
	if err != nil {
		return err
	}
	recheck := time.NewTicker(30 * time.Second)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-recheck.C:
			if n, err = s.node(ctx); err != nil {
				return err
			}
		case <-sub.overflow:
			if have, rev, err = send(true); err != nil {
				return err
			}
		case msg := <-sub.ch:
			if msg.evicted == n.SPIFFEID {
				return s.refuse(ctx, codes.PermissionDenied, "node:"+n.SPIFFEID, "node "+n.SPIFFEID+" is evicted")
			}
			var out SyncResponse
			if msg.bundle != nil {
				out.Bundle = msg.bundle
			}
			for _, c := range msg.changes {
				if c.Revision <= rev {
					continue
				}
				switch {
				case !c.Deleted && applies(n, c.Entry.Parent):
					out.Entries = append(out.Entries, toEntry(c.Entry))
					have[c.Entry.ID] = true
				case have[c.Entry.ID]:
					out.Removed = append(out.Removed, c.Entry.ID)
					delete(have, c.Entry.ID)
				}
				rev = max(rev, c.Revision)
			}
			if out.Bundle == nil && len(out.Entries) == 0 && len(out.Removed) == 0 {
				continue
			}
			out.Revision = rev
			if err := stream.SendMsg(&out); err != nil {
				return err
			}
		}
	}
}

// MintX509SVIDs signs SVIDs for entries of the calling node, in parallel.
func (s *Server) MintX509SVIDs(ctx context.Context, in *MintRequest) (*MintResponse, error) {
	n, err := s.node(ctx)
	if err != nil {
		return nil, err
	}
	if len(in.Items) > 5000 {
		return nil, status.Error(codes.InvalidArgument, "at most 5000 SVIDs per request")
	}
	out := &MintResponse{Items: make([]MintResult, len(in.Items))}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(len(in.Items), 8*runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out.Items[i] = s.mintOne(ctx, n, in.Items[i])
			}
		}()
	}
	for i := range in.Items {
		work <- i
	}
	close(work)
	wg.Wait()
	return out, nil
}

func (s *Server) mintOne(ctx context.Context, n store.Node, item MintItem) MintResult {
	res := MintResult{EntryID: item.EntryID}
	e, err := s.st.GetEntry(ctx, item.EntryID)
	if err != nil || !applies(n, e.Parent) {
		res.Error = fmt.Sprintf("entry %s does not exist or does not apply to node %s", item.EntryID, n.SPIFFEID)
		return res
	}
	issued, err := s.ca.SignSVID(ctx, ca.SVIDRequest{SPIFFEID: e.SPIFFEID, DNSNames: e.DNSNames, CSR: item.CSR, TTL: e.X509TTL,
		Tag: ca.WorkloadSVIDTag, Actor: "node:" + n.SPIFFEID, Detail: map[string]string{"entry": e.ID}})
	if err != nil {
		res.Error = strings.TrimPrefix(err.Error(), "ca: ")
		return res
	}
	res.Chain = chainDER(issued)
	return res
}

// MintJWTSVID signs a JWT-SVID for an entry of the calling node.
func (s *Server) MintJWTSVID(ctx context.Context, in *JWTRequest) (*JWTResponse, error) {
	n, err := s.node(ctx)
	if err != nil {
		return nil, err
	}
	if len(in.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a JWT-SVID needs an audience")
	}
	e, err := s.st.GetEntry(ctx, in.EntryID)
	if err != nil || !applies(n, e.Parent) {
		return nil, status.Errorf(codes.PermissionDenied, "entry %s does not exist or does not apply to node %s", in.EntryID, n.SPIFFEID)
	}
	tok, exp, err := s.ca.SignJWTSVID(ctx, ca.JWTSVIDRequest{SPIFFEID: e.SPIFFEID, Audience: in.Audience, TTL: e.JWTTTL,
		Actor: "node:" + n.SPIFFEID, Detail: map[string]string{"entry": e.ID}})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &JWTResponse{Token: tok, Expiry: exp}, nil
}

// RenewNode issues the calling node a fresh node SVID.
func (s *Server) RenewNode(ctx context.Context, in *RenewRequest) (*AttestResponse, error) {
	n, err := s.node(ctx)
	if err != nil {
		return nil, err
	}
	n.UpdatedAt = s.now()
	issued, err := s.ca.SignSVID(ctx, ca.SVIDRequest{SPIFFEID: n.SPIFFEID, CSR: in.CSR, TTL: ca.DefaultNodeSVIDTTL, Tag: ca.NodeSVIDTag, Actor: "node:" + n.SPIFFEID, Node: &n})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &AttestResponse{SPIFFEID: n.SPIFFEID, Chain: chainDER(issued), Bundle: s.bundle()}, nil
}

// SignDeclared issues a certificate the calling node declared, if a node
// provisioner names the node and its policy allows the names (decided and
// audited by the issuance path). An attested node may ask whether or not
// its last certificate expired: the node SVID is the credential.
func (s *Server) SignDeclared(ctx context.Context, in *DeclaredRequest) (*DeclaredResponse, error) {
	n, err := s.node(ctx)
	if err != nil {
		return nil, err
	}
	issued, err := s.ca.SignDeclared(ctx, ca.DeclaredRequest{Node: n, Provisioner: in.Provisioner, CSR: in.CSR, TTL: in.TTL, Manifest: in.Manifest})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &DeclaredResponse{Chain: chainDER(issued), Roots: [][]byte{s.ca.Hierarchy().Root().Raw}}, nil
}

// bundle is the trust bundle agents hand to workloads: the root and every
// unexpired intermediate, and the JWT-SVID key. Its sequence is the newest
// NotBefore among them, so it grows when an intermediate is rotated.
func (s *Server) bundle() Bundle {
	h := s.ca.Hierarchy()
	b := Bundle{TrustDomain: h.TrustDomain(), JWTKeys: map[string][]byte{}}
	root := h.Root()
	b.X509 = append(b.X509, root.Raw)
	seq := root.NotBefore.Unix()
	now := s.now()
	for _, iss := range h.Issuers() {
		if now.Before(iss.Cert.NotAfter) {
			b.X509 = append(b.X509, iss.Cert.Raw)
			seq = max(seq, iss.Cert.NotBefore.Unix())
		}
	}
	if kid, pub := s.ca.JWTKey(); pub != nil {
		if der, err := x509.MarshalPKIXPublicKey(pub); err == nil {
			b.JWTKeys[kid] = der
		}
	}
	b.Sequence = seq
	return b
}

// Bundle returns the current trust bundle (for /bundle).
func (s *Server) Bundle() Bundle { return s.bundle() }

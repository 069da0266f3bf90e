package workload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Config configures a Server.
type Config struct {
	// Socket is the path of the Unix socket to serve on. Its directory must
	// exist (the caller makes it, with the permissions it wants); the socket
	// is created mode 0666, replacing a stale socket left by a previous run.
	Socket string
	// Source is what the server serves. Required.
	Source Source
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer, if not nil, registers the server's metrics:
	// meshpki_workload_requests_total{method,code} and
	// meshpki_workload_attest_seconds.
	Registerer prometheus.Registerer
}

// Server serves the SPIFFE Workload API on a Unix socket. Create it with New
// and run it with Serve.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	src      Source
	log      *slog.Logger
	metrics  *metrics
	attestor attestor
	grpc     *grpc.Server
	lis      *net.UnixListener
	socket   string
	sockInfo fs.FileInfo // the socket we created, so that we remove only it

	mu   sync.Mutex // serializes snapshot rebuilds
	snap atomic.Pointer[snapshot]

	served   atomic.Bool
	stopping chan struct{} // closed when Serve begins to stop: ends streams
}

// shutdownGrace is how long Serve lets calls in flight finish once its
// context ends.
const shutdownGrace = 2 * time.Second

// nameCacheTTL is how long user and group names are remembered.
const nameCacheTTL = time.Minute

// New checks cfg and creates the socket, so that clients may connect as soon
// as it returns; they are served once Serve runs. It fails if another server
// is accepting on the socket, or if the path exists and is not a socket.
func New(cfg Config) (*Server, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	if cfg.Socket == "" {
		return nil, errors.New("workload: Config.Socket is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("workload: Config.Source is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("workload: registering metrics: %w", err)
	}
	lis, info, err := listen(cfg.Socket)
	if err != nil {
		return nil, err
	}
	s := &Server{
		src:      cfg.Source,
		log:      log,
		metrics:  m,
		attestor: attestor{hashes: newHashCache(), names: newNameCache(nameCacheTTL)},
		lis:      lis,
		socket:   cfg.Socket,
		sockInfo: info,
		stopping: make(chan struct{}),
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(peerCredTransport{}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	workload.RegisterSpiffeWorkloadAPIServer(s.grpc, s)
	return s, nil
}

// listen creates the socket at path with mode 0666.
func listen(path string) (*net.UnixListener, fs.FileInfo, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, nil, fmt.Errorf("workload: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, nil, fmt.Errorf("workload: socket %s is in use by another server", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("workload: removing stale socket: %w", err)
		}
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("workload: %w", err)
	}
	lis.SetUnlinkOnClose(false) // Serve removes it, if it is still ours
	fail := func(err error) (*net.UnixListener, fs.FileInfo, error) {
		lis.Close()
		os.Remove(path)
		return nil, nil, fmt.Errorf("workload: %w", err)
	}
	// Every local process may connect; attestation decides what it gets.
	if err := os.Chmod(path, 0o666); err != nil {
		return fail(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return lis, info, nil
}

// Addr is the socket's address in the form go-spiffe's workloadapi.WithAddr
// and the SPIFFE_ENDPOINT_SOCKET variable take: "unix:///path".
func (s *Server) Addr() string {
	return "unix://" + s.socket
}

// Serve serves until ctx ends, then ends the open streams, lets calls in
// flight finish for up to two seconds, and removes the socket. It returns nil
// after ctx ends, or the error that stopped serving before that. Call it
// once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("workload: Serve called twice")
	}
	s.log.Info("workload api: serving", "socket", s.socket)
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	close(s.stopping)
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		s.grpc.Stop()
		<-stopped
	}
	s.lis.Close()
	if fi, err := os.Lstat(s.socket); err == nil && os.SameFile(fi, s.sockInfo) {
		os.Remove(s.socket)
	}
	s.log.Info("workload api: stopped", "socket", s.socket)
	if serveErr != nil {
		return fmt.Errorf("workload: serving: %w", serveErr)
	}
	return nil
}

// current returns a snapshot of the Source that is not stale, rebuilding it
// after a change.
func (s *Server) current() *snapshot {
	if snap := s.snap.Load(); snap != nil && !snap.stale() {
		return snap
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap := s.snap.Load(); snap != nil && !snap.stale() {
		return snap
	}
	snap := newSnapshot(s.src, s.log)
	s.snap.Store(snap)
	return snap
}

// caller is an attested Workload API client.
type caller struct {
	creds     *PeerCredentials
	selectors map[string]struct{}
}

// attest attests the process behind ctx's connection.
func (s *Server) attest(ctx context.Context) (*caller, error) {
	creds := peerCredentials(ctx)
	if creds == nil {
		return nil, status.Error(codes.Internal, "workload: connection has no peer credentials")
	}
	start := time.Now()
	selectors, err := s.attestor.attest(creds.PID, creds.UID, creds.GID, creds.exited)
	s.metrics.attest.Observe(time.Since(start).Seconds())
	if err != nil {
		var exited *ExitedError
		if errors.As(err, &exited) || errors.Is(err, errPIDNotVisible) {
			s.log.Warn("workload api: caller not attested", "pid", creds.PID, "uid", creds.UID, "err", err)
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		s.log.Error("workload api: attestation failed", "pid", creds.PID, "uid", creds.UID, "err", err)
		return nil, status.Errorf(codes.Internal, "workload: attestation of uid %d, pid %d failed: %v", creds.UID, creds.PID, err)
	}
	set := make(map[string]struct{}, len(selectors))
	for _, sel := range selectors {
		set[sel] = struct{}{}
	}
	return &caller{creds: creds, selectors: set}, nil
}

func peerCredentials(ctx context.Context) *PeerCredentials {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	creds, _ := p.AuthInfo.(*PeerCredentials)
	return creds
}

// errNoIdentity is the PermissionDenied a caller entitled to nothing gets.
func errNoIdentity(c *caller) error {
	return status.Errorf(codes.PermissionDenied,
		"no identity issued: no registration entry matches this workload (uid %d, pid %d)", c.creds.UID, c.creds.PID)
}

var errNoChain = errors.New("empty certificate chain")

// checkHeader enforces the Workload API's security header.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	err := checkHeader(ctx)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}
	s.observe(ctx, info.FullMethod, err, start)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := checkHeader(ss.Context())
	if err == nil {
		err = handler(srv, ss)
	}
	s.observe(ss.Context(), info.FullMethod, err, start)
	return err
}

func (s *Server) observe(ctx context.Context, fullMethod string, err error, start time.Time) {
	method := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	code := status.Code(err)
	s.metrics.requests.WithLabelValues(method, code.String()).Inc()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		var pid int32
		var uid uint32
		if creds := peerCredentials(ctx); creds != nil {
			pid, uid = creds.PID, creds.UID
		}
		s.log.Debug("workload api: call", "method", method, "code", code.String(), "pid", pid, "uid", uid,
			"duration", time.Since(start))
	}
}

// metrics are the Workload API's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	attest   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshpki_workload_requests_total",
			Help: "Workload API calls by method and gRPC status code; a stream counts when it ends.",
		}, []string{"method", "code"}),
		attest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshpki_workload_attest_seconds",
			Help:    "Time to attest a Workload API caller from its peer credentials.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.attest} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

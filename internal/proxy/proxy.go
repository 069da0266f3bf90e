package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction says which side of a proxy speaks mTLS.
type Direction string

// The directions.
const (
	// Inbound terminates mTLS from peers and forwards plain to the app.
	Inbound Direction = "inbound"
	// Outbound accepts plain connections from the app and originates mTLS.
	Outbound Direction = "outbound"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultMaxConns         = 4096
	DefaultDrainTimeout     = 30 * time.Second
)

// Config is one proxy.
type Config struct {
	Direction Direction
	// To is where connections go: HOST:PORT, or unix:PATH for an inbound
	// proxy's app.
	To string
	// Holder is the workload's identity; Authz says which peers are
	// allowed (the clients of an inbound proxy, the server of an outbound
	// one).
	Holder *Holder
	Authz  Authorizer
	TLS    TLSOptions
	// ServerName is sent as SNI by an outbound proxy (default: To's host).
	ServerName string
	// Timeouts: a handshake, a dial to To, a connection with no byte in
	// either direction (0 takes the defaults; a negative IdleTimeout means
	// none).
	HandshakeTimeout, DialTimeout, IdleTimeout time.Duration
	// MaxConns bounds open connections; more wait in the listen backlog.
	MaxConns int
	// DrainTimeout bounds how long Serve waits for open connections once
	// its context ends.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Proxy forwards connections in one direction.
type Proxy struct {
	cfg    Config
	tls    *tls.Config
	slots  chan struct{}
	log    *slog.Logger
	wg     sync.WaitGroup
	open   sync.Map // net.Conn → struct{}: closed when draining runs out
	active atomic.Int64
}

// New checks cfg and builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Holder == nil || cfg.To == "" {
		return nil, errors.New("proxy: Config needs a Holder and a To")
	}
	if len(cfg.Authz) == 0 {
		return nil, errors.New("proxy: an allow list is required (who may connect, or whom to expect)")
	}
	if strings.HasPrefix(cfg.To, "unix:") && cfg.Direction != Inbound {
		return nil, errors.New("proxy: unix:PATH is for an inbound proxy's app")
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.Default()
	}
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&p.cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	set(&p.cfg.DialTimeout, DefaultDialTimeout)
	set(&p.cfg.IdleTimeout, DefaultIdleTimeout)
	set(&p.cfg.DrainTimeout, DefaultDrainTimeout)
	if p.cfg.MaxConns <= 0 {
		p.cfg.MaxConns = DefaultMaxConns
	}
	p.slots = make(chan struct{}, p.cfg.MaxConns)
	switch cfg.Direction {
	case Inbound:
		p.tls = ServerConfig(cfg.Holder, cfg.Authz, cfg.TLS)
	case Outbound:
		p.tls = ClientConfig(cfg.Holder, cfg.Authz, cfg.TLS)
		if p.tls.ServerName = cfg.ServerName; p.tls.ServerName == "" {
			host, _, err := net.SplitHostPort(cfg.To)
			if err != nil {
				return nil, fmt.Errorf("proxy: --to %q: %v", cfg.To, err)
			}
			if net.ParseIP(host) == nil {
				p.tls.ServerName = host
			}
		}
	default:
		return nil, fmt.Errorf("proxy: direction %q", cfg.Direction)
	}
	return p, nil
}

// Active is how many connections are open.
func (p *Proxy) Active() int64 { return p.active.Load() }

// Serve accepts on ln until ctx ends, then stops accepting, waits up to
// DrainTimeout for open connections to finish, and closes the rest.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			<-p.slots
			if ctx.Err() != nil {
				err = nil
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			break
		}
		p.wg.Add(1)
		p.active.Add(1)
		go func() {
			defer func() { <-p.slots; p.active.Add(-1); p.wg.Done() }()
			p.handle(c)
		}()
	}
	p.drain()
	return err
}

// drain waits for open connections, then closes what is left.
func (p *Proxy) drain() {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(p.cfg.DrainTimeout):
	}
	p.open.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	<-done
}

// conn is what one connection's log line says.
type conn struct {
	start   time.Time
	client  string
	peer    string
	in, out atomic.Int64 // bytes from the client, bytes to it
	result  string
	reason  string
}

func (p *Proxy) handle(c net.Conn) {
	p.open.Store(c, struct{}{})
	defer p.open.Delete(c)
	defer c.Close()
	rec := &conn{start: time.Now(), client: c.RemoteAddr().String(), result: "ok"}
	defer p.logConn(rec)
	p.cfg.Metrics.opened(p.cfg.Direction)
	defer p.cfg.Metrics.closed(p.cfg.Direction)

	var front, back net.Conn // front: the accepted side; back: the dialled side
	switch p.cfg.Direction {
	case Inbound:
		tc := tls.Server(c, p.tls)
		if err := p.handshake(tc, rec); err != nil {
			return
		}
		front = tc
		b, err := p.dialApp()
		if err != nil {
			rec.result, rec.reason = "error", "app unreachable: "+err.Error()
			p.cfg.Metrics.failed(p.cfg.Direction, "backend")
			return
		}
		back = b
	case Outbound:
		front = c
		raw, err := (&net.Dialer{Timeout: p.cfg.DialTimeout}).Dial("tcp", p.cfg.To)
		if err != nil {
			rec.result, rec.reason = "error", "upstream unreachable: "+err.Error()
			p.cfg.Metrics.failed(p.cfg.Direction, "backend")
			return
		}
		p.open.Store(raw, struct{}{})
		defer p.open.Delete(raw)
		tc := tls.Client(raw, p.tls)
		if err := p.handshake(tc, rec); err != nil {
			raw.Close()
			return
		}
		back = tc
	}
	p.open.Store(back, struct{}{})
	defer p.open.Delete(back)
	defer back.Close()
	p.pipe(front, back, rec)
}

// handshake completes tc's handshake within the timeout and records the
// peer, or the refusal.
func (p *Proxy) handshake(tc *tls.Conn, rec *conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.HandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err != nil {
		p.refused(rec, err)
		return err
	}
	if peer, err := PeerOf(tc.ConnectionState()); err == nil {
		rec.peer = peer.Name()
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *Proxy) dialApp() (net.Conn, error) {
	if path, ok := strings.CutPrefix(p.cfg.To, "unix:"); ok {
		return net.DialTimeout("unix", path, p.cfg.DialTimeout)
	}
	return net.DialTimeout("tcp", p.cfg.To, p.cfg.DialTimeout)
}

// pipe copies both ways until both are done. A side that ends its writes
// has the other side's writes ended too (half-close); the connection ends
// when no byte moved either way for IdleTimeout.
func (p *Proxy) pipe(front, back net.Conn, rec *conn) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(back, front, &rec.in, &last) }()
	go func() { defer wg.Done(); p.copy(front, back, &rec.out, &last) }()
	wg.Wait()
	p.cfg.Metrics.bytes(p.cfg.Direction, rec.in.Load(), rec.out.Load())
}

type closeWriter interface{ CloseWrite() error }

// copy moves bytes from src to dst, counting them, and keeps the shared
// last-activity time; a read that waited IdleTimeout goes on while the
// other direction was active within it. The read deadline is moved only
// when half of it has passed, not at every read: each move costs a timer
// update, which showed in the keep-alive benchmark.
func (p *Proxy) copy(dst, src net.Conn, n, last *atomic.Int64) {
	buf := make([]byte, 32<<10)
	idle := p.cfg.IdleTimeout
	var armed time.Time // the read deadline set
	for {
		if idle > 0 {
			if now := time.Now(); armed.Sub(now) < idle/2 {
				armed = now.Add(idle)
				_ = src.SetReadDeadline(armed)
			}
		}
		k, err := src.Read(buf)
		if k > 0 {
			if idle > 0 {
				last.Store(time.Now().UnixNano())
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				src.Close()
				return
			}
			n.Add(int64(k))
		}
		if err != nil {
			if isTimeout(err) && idle > 0 && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(closeWriter); ok {
					_ = cw.CloseWrite()
					return
				}
			}
			dst.Close()
			src.Close()
			return
		}
	}
}

func (p *Proxy) logConn(rec *conn) {
	attrs := []any{"direction", string(p.cfg.Direction), "client", rec.client, "peer", rec.peer, "to", p.cfg.To,
		"bytes_in", rec.in.Load(), "bytes_out", rec.out.Load(), "duration", time.Since(rec.start).Round(time.Microsecond).String(),
		"result", rec.result}
	if rec.reason != "" {
		attrs = append(attrs, "reason", rec.reason)
	}
	p.cfg.Metrics.observe(p.cfg.Direction, rec.result, time.Since(rec.start))
	if rec.result == "ok" {
		p.log.Info("connection", attrs...)
		return
	}
	p.log.Warn("connection", attrs...)
}

// clip keeps what a peer caused to be printed short.
func clip(s string) string {
	const n = 256
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/crlset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// XFCCHeader is Envoy's header for the verified client certificate.
const XFCCHeader = "X-Forwarded-Client-Cert"

// xfcc is the X-Forwarded-Client-Cert element for a peer, in Envoy's
// format: By (this proxy's SPIFFE ID), Hash (hex SHA-256 of the peer's
// DER), URI (its SPIFFE ID) and DNS (each DNS SAN), ';'-separated, values
// with ',', ';', '=' or '"' quoted.
func xfcc(own string, peer Peer) string {
	sum := sha256.Sum256(peer.Leaf.Raw)
	parts := []string{"By=" + xfccValue(own), "Hash=" + hex.EncodeToString(sum[:])}
	if !peer.ID.IsZero() {
		parts = append(parts, "URI="+xfccValue(peer.ID.String()))
	}
	for _, d := range peer.Leaf.DNSNames {
		parts = append(parts, "DNS="+xfccValue(d))
	}
	return strings.Join(parts, ";")
}

func xfccValue(v string) string {
	if strings.ContainsAny(v, ",;=\"") {
		return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return v
}

// ServeHTTP is Serve for an inbound proxy in front of an HTTP app: it
// terminates mTLS, strips any X-Forwarded-Client-Cert the client sent,
// sets it to the verified peer, and forwards each request (keep-alive on
// both sides). It logs a line per request and per refused handshake.
func (p *Proxy) ServeHTTP(ctx context.Context, ln net.Listener) error {
	if p.cfg.Direction != Inbound {
		return errors.New("proxy: HTTP mode is for an inbound proxy")
	}
	target := &url.URL{Scheme: "http", Host: p.cfg.To}
	transport := &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: p.cfg.DialTimeout}).DialContext}
	if path, ok := strings.CutPrefix(p.cfg.To, "unix:"); ok {
		target.Host = "app"
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: p.cfg.DialTimeout}).DialContext(ctx, "unix", path)
		}
	}
	defer transport.CloseIdleConnections()
	rp := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del(XFCCHeader)
			if pr.In.TLS == nil {
				return
			}
			if peer, err := PeerOf(*pr.In.TLS); err == nil {
				own := ""
				if id := p.cfg.Holder.Load(); id != nil {
					own = id.ID.String()
				}
				pr.Out.Header.Set(XFCCHeader, xfcc(own, peer))
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.cfg.Metrics.failed(p.cfg.Direction, "backend")
			http.Error(w, "the app behind this proxy is unreachable", http.StatusBadGateway)
			p.log.Warn("request", "direction", string(p.cfg.Direction), "method", r.Method, "path", clip(r.URL.Path),
				"result", "error", "reason", "app unreachable: "+clip(err.Error()))
		},
	}
	tlsCfg := p.tls.Clone()
	verify := tlsCfg.VerifyConnection
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			rec := &conn{start: time.Now(), result: "ok"}
			p.refused(rec, err)
			p.logConn(rec)
		}
		return err
	}
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		peer := ""
		if r.TLS != nil {
			if pe, err := PeerOf(*r.TLS); err == nil {
				peer = pe.Name()
			}
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		p.cfg.Metrics.observe(p.cfg.Direction, "ok", time.Since(start))
		p.cfg.Metrics.bytes(p.cfg.Direction, max(r.ContentLength, 0), sw.n)
		p.log.Info("request", "direction", string(p.cfg.Direction), "client", r.RemoteAddr, "peer", peer, "method", r.Method,
			"path", clip(r.URL.Path), "status", sw.status, "bytes_out", sw.n, "duration", time.Since(start).Round(time.Microsecond).String())
	})
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: p.cfg.HandshakeTimeout,
		ErrorLog:          log.New(discardTLSErrors{}, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				p.cfg.Metrics.opened(p.cfg.Direction)
				p.active.Add(1)
			case http.StateClosed, http.StateHijacked:
				p.cfg.Metrics.closed(p.cfg.Direction)
				p.active.Add(-1)
			}
		},
	}
	if p.cfg.IdleTimeout > 0 {
		srv.IdleTimeout = p.cfg.IdleTimeout
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// refused records a handshake refusal for the log and metrics.
func (p *Proxy) refused(rec *conn, err error) {
	reason, detail := "handshake", err.Error()
	var r *Refusal
	switch {
	case errors.As(err, &r):
		reason, detail = r.Reason, r.Detail
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		reason = "timeout"
	case errors.Is(err, ErrNoIdentity):
		reason = "no_identity"
	}
	rec.result, rec.reason = "refused", reason+": "+clip(detail)
	p.cfg.Metrics.failed(p.cfg.Direction, reason)
	if reason == "not_allowed" {
		p.cfg.Metrics.denied(p.cfg.Direction)
	}
}

// discardTLSErrors drops net/http's own log lines: refusals are logged, as
// structured lines, by VerifyConnection.
type discardTLSErrors struct{}

func (discardTLSErrors) Write(p []byte) (int, error) { return len(p), nil }

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// AdminHandler serves /healthz (the process runs), /readyz (an identity
// is held and unexpired: 503 otherwise) and /metrics.
func AdminHandler(h *Holder, crls *crlset.Set, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		id := h.Load()
		switch {
		case id == nil:
			http.Error(w, "no identity yet", http.StatusServiceUnavailable)
		case time.Now().After(id.NotAfter()):
			http.Error(w, "the identity expired at "+id.NotAfter().UTC().Format(time.RFC3339), http.StatusServiceUnavailable)
		case crls != nil && !crls.Status(time.Now()).Ready:
			http.Error(w, "the CRLs have not all been fetched yet", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok " + id.ID.String() + "\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

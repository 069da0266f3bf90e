package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/meshpki/meshpki/internal/crlset"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// RunConfig is a whole `meshpki proxy` process: one proxy, its identity
// source and its admin endpoints.
type RunConfig struct {
	Config
	// Listen is the address the proxy accepts on.
	Listen string
	// HTTP makes an inbound proxy speak HTTP to the app (see ServeHTTP).
	HTTP bool
	// WorkloadAPI is the agent's socket ("unix:///…"; "" for
	// SPIFFE_ENDPOINT_SOCKET); Files, when set, are used instead.
	WorkloadAPI string
	Files       *Files
	// AdminListen, if set, serves /healthz, /readyz and /metrics.
	AdminListen string
	// CRLs are URLs of CRLs to refuse revoked peers by (fetched now, then
	// every CRLRefresh, default crlset.DefaultRefresh, with conditional
	// GETs); /readyz waits for every one to be fetched once.
	CRLs       []string
	CRLRefresh time.Duration
	// Ready, if set, is told the proxy's and the admin addresses once
	// listening.
	Ready func(proxy, admin net.Addr)
}

// Run runs the proxy until ctx ends, then drains.
func Run(ctx context.Context, cfg RunConfig) error {
	if cfg.Holder == nil {
		cfg.Holder = NewHolder()
	}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	cfg.Metrics = metrics
	var crls *crlset.Set
	if len(cfg.CRLs) > 0 {
		crls = &crlset.Set{URLs: cfg.CRLs, Refresh: cfg.CRLRefresh, Logger: cfg.Logger}
		cfg.TLS.Revocation = crls
	}
	p, err := New(cfg.Config)
	if err != nil {
		return err
	}
	if cfg.HTTP && cfg.Direction != Inbound {
		return errors.New("proxy: --http is for an inbound proxy")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	defer ln.Close()
	var adminLn net.Listener
	if cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("proxy: admin listen: %w", err)
		}
		defer adminLn.Close()
	}
	g, ctx := errgroup.WithContext(ctx)
	sourceCtx, stopSource := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSource()
	g.Go(func() error {
		var err error
		if cfg.Files != nil {
			err = WatchFiles(sourceCtx, *cfg.Files, time.Second, cfg.Holder, p.log)
		} else {
			err = WatchWorkloadAPI(sourceCtx, cfg.WorkloadAPI, cfg.Holder, p.log)
		}
		if err != nil && sourceCtx.Err() == nil {
			return err
		}
		return nil
	})
	if crls != nil {
		g.Go(func() error { return crls.Run(sourceCtx) })
	}
	if adminLn != nil {
		srv := &http.Server{Handler: AdminHandler(cfg.Holder, crls, reg), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			return srv.Close()
		})
	}
	g.Go(func() error {
		defer stopSource() // the identity is needed until the proxy has drained
		if cfg.HTTP {
			return p.ServeHTTP(ctx, ln)
		}
		return p.Serve(ctx, ln)
	})
	if cfg.Ready != nil {
		var a net.Addr
		if adminLn != nil {
			a = adminLn.Addr()
		}
		cfg.Ready(ln.Addr(), a)
	}
	return g.Wait()
}

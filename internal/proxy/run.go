package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

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
	if adminLn != nil {
		srv := &http.Server{Handler: AdminHandler(cfg.Holder, reg), ReadHeaderTimeout: 10 * time.Second}
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

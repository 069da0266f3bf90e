package workload_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/meshpki/meshpki/internal/workload"
)

func ExampleServer() {
	var cache workload.Source // the agent's SVID cache
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	srv, err := workload.New(workload.Config{
		Socket: "/run/meshpki/agent.sock", // in a directory the agent made
		Source: cache,
		Logger: slog.Default(),
	})
	if err != nil {
		slog.Error("workload api", "err", err)
		return
	}
	// Workloads connect with SPIFFE_ENDPOINT_SOCKET=srv.Addr().
	if err := srv.Serve(ctx); err != nil {
		slog.Error("workload api", "err", err)
	}
}

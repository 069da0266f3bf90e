// Command spire-bench measures a running SPIRE server and agent from the
// point of view of a workload, so that the figures can be set beside
// meshpki's own in docs/BENCHMARKS.md.
//
// It runs three measurements, in order:
//
//  1. fetch: FetchX509SVID latency over the agent's Workload API socket for
//     an SVID the agent already holds, once with one reused go-spiffe client
//     and once with a new client per fetch.
//  2. entry→SVID: the time from a registration entry being created through
//     the server API to its SVID reaching a workload that watches with
//     WatchX509Context, one entry at a time.
//  3. minting: the time from creating many entries in one batch to the
//     watching workload holding an SVID for every one of them.
//
// Every entry it creates selects the harness's own uid (unix:uid:<uid>) and
// is parented to the agent, so the one watching process sees them all.
// run.sh starts SPIRE, runs this program and stops everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
)

// benchConfig holds the command-line settings of one run.
type benchConfig struct {
	// workloadAddr is the agent's Workload API address, "unix:///path".
	workloadAddr string
	// serverSocket is the path of the server's local API socket.
	serverSocket string
	// agentID is the agent's SPIFFE ID, the parent of every entry created.
	agentID string
	// fetches is how many FetchX509SVID calls each fetch mode makes.
	fetches int
	// entries is how many entries the entry→SVID measurement creates.
	entries int
	// jitterMax bounds the random pause before each entry is created, so
	// creations fall at uniformly spread points of the sync cycles.
	jitterMax time.Duration
	// mint is how many entries the minting measurement creates at once.
	mint int
	// waitMax bounds each wait for an SVID to arrive.
	waitMax time.Duration
}

func main() {
	var cfg benchConfig
	flag.StringVar(&cfg.workloadAddr, "workload-addr", "", "agent Workload API address (unix:///path)")
	flag.StringVar(&cfg.serverSocket, "server-socket", "", "path of the SPIRE server API socket")
	flag.StringVar(&cfg.agentID, "agent-id", "", "SPIFFE ID of the agent (parent of the entries)")
	flag.IntVar(&cfg.fetches, "fetches", 1000, "FetchX509SVID calls per fetch mode")
	flag.IntVar(&cfg.entries, "entries", 50, "entries created one at a time for entry→SVID latency")
	flag.DurationVar(&cfg.jitterMax, "jitter", 5*time.Second, "upper bound of the random pause before each single entry")
	flag.IntVar(&cfg.mint, "mint", 1000, "entries created in one batch for the minting measurement")
	flag.DurationVar(&cfg.waitMax, "wait", 3*time.Minute, "longest wait for SVIDs to arrive")
	flag.Parse()
	if cfg.workloadAddr == "" || cfg.serverSocket == "" || cfg.agentID == "" {
		fmt.Fprintln(os.Stderr, "spire-bench: -workload-addr, -server-socket and -agent-id are required")
		os.Exit(2)
	}
	if err := run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "spire-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg benchConfig) error {
	agentID, err := spiffeid.FromString(cfg.agentID)
	if err != nil {
		return fmt.Errorf("bad -agent-id: %w", err)
	}
	td := agentID.TrustDomain()
	uid := strconv.Itoa(os.Getuid())

	conn, err := grpc.NewClient("passthrough:unix",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.serverSocket)
		}))
	if err != nil {
		return fmt.Errorf("server api: %w", err)
	}
	defer conn.Close()
	reg := &registrar{
		client: entryv1.NewEntryClient(conn),
		parent: &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()},
		td:     td.Name(),
		uid:    uid,
	}

	// Large watch updates (one message carries every SVID of the workload)
	// must not hit gRPC's 4 MiB default receive limit.
	clientOpts := []workloadapi.ClientOption{
		workloadapi.WithAddr(cfg.workloadAddr),
		workloadapi.WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20))),
	}

	w := newWatcher()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchClient, err := workloadapi.New(watchCtx, clientOpts...)
	if err != nil {
		return fmt.Errorf("workload api: %w", err)
	}
	defer watchClient.Close()
	watchDone := make(chan error, 1)
	go func() { watchDone <- watchClient.WatchX509Context(watchCtx, w) }()

	// The first entry serves the fetch measurement; its arrival also proves
	// that server, agent and attestation work end to end.
	fmt.Printf("spire-bench: uid %s, agent %s\n", uid, agentID)
	baseID := "/bench/fetch"
	start := time.Now()
	if err := reg.create(ctx, []string{baseID}); err != nil {
		return err
	}
	if _, err := w.waitFor(ctx, td.ID().String()+baseID, cfg.waitMax); err != nil {
		return fmt.Errorf("first entry: %w", err)
	}
	fmt.Printf("spire-bench: first SVID after %s\n", time.Since(start).Round(time.Millisecond))

	fetchReused, err := measureFetchReused(ctx, cfg.fetches, clientOpts)
	if err != nil {
		return err
	}
	fetchNew, err := measureFetchNew(ctx, cfg.fetches, clientOpts)
	if err != nil {
		return err
	}

	entryLatency, err := measureEntryToSVID(ctx, cfg, reg, w)
	if err != nil {
		return err
	}

	mint, err := measureMint(ctx, cfg, reg, w)
	if err != nil {
		return err
	}

	stopWatch()
	if err := <-watchDone; err != nil && !errors.Is(err, context.Canceled) && grpcstatus.Code(err) != codes.Canceled {
		return fmt.Errorf("watch: %w", err)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nmeasurement\tn\tp50\tp99\tmin\tmax\tmean")
	for _, row := range []struct {
		name string
		s    summary
	}{
		{"FetchX509SVID, reused client", fetchReused},
		{"FetchX509SVID, new client per fetch", fetchNew},
		{"entry create → SVID at watcher", entryLatency},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", row.name, row.s.n,
			dur(row.s.p50), dur(row.s.p99), dur(row.s.min), dur(row.s.max), dur(row.s.mean))
	}
	tw.Flush()
	fmt.Printf("\nminting %d entries created in one BatchCreateEntry call:\n", cfg.mint)
	line := func(label, value string) { fmt.Printf("  %-34s %s\n", label, value) }
	line("BatchCreateEntry RPC", dur(mint.createRPC))
	line("create → first SVID at watcher", dur(mint.first))
	line(fmt.Sprintf("create → all %d SVIDs at watcher", cfg.mint),
		fmt.Sprintf("%s  (%.1f SVIDs/s)", dur(mint.all), float64(cfg.mint)/mint.all.Seconds()))
	line("first → last SVID at watcher", dur(mint.all-mint.first))
	line("watch updates while minting", strconv.Itoa(mint.updates))
	return nil
}

// measureFetchReused makes n FetchX509SVID calls on one client.
func measureFetchReused(ctx context.Context, n int, opts []workloadapi.ClientOption) (summary, error) {
	client, err := workloadapi.New(ctx, opts...)
	if err != nil {
		return summary{}, fmt.Errorf("fetch reused: %w", err)
	}
	defer client.Close()
	// One untimed call opens the connection.
	if _, err := client.FetchX509SVID(ctx); err != nil {
		return summary{}, fmt.Errorf("fetch reused: warm-up: %w", err)
	}
	samples := make([]time.Duration, 0, n)
	for range n {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		_, err := client.FetchX509SVID(callCtx)
		elapsed := time.Since(t0)
		cancel()
		if err != nil {
			return summary{}, fmt.Errorf("fetch reused: %w", err)
		}
		samples = append(samples, elapsed)
	}
	return summarize(samples), nil
}

// measureFetchNew makes n workloadapi.FetchX509SVID calls, each of which
// dials, fetches and closes a client of its own.
func measureFetchNew(ctx context.Context, n int, opts []workloadapi.ClientOption) (summary, error) {
	samples := make([]time.Duration, 0, n)
	for range n {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		_, err := workloadapi.FetchX509SVID(callCtx, opts...)
		elapsed := time.Since(t0)
		cancel()
		if err != nil {
			return summary{}, fmt.Errorf("fetch new client: %w", err)
		}
		samples = append(samples, elapsed)
	}
	return summarize(samples), nil
}

// measureEntryToSVID creates cfg.entries entries one after another, each
// after a random pause, and times each from just before its create RPC to
// the watch update that first carries its SVID.
func measureEntryToSVID(ctx context.Context, cfg benchConfig, reg *registrar, w *watcher) (summary, error) {
	prefix := spiffeid.RequireTrustDomainFromString(reg.td).ID().String()
	samples := make([]time.Duration, 0, cfg.entries)
	for i := range cfg.entries {
		if cfg.jitterMax > 0 {
			time.Sleep(rand.N(cfg.jitterMax))
		}
		path := fmt.Sprintf("/bench/latency/%d", i)
		t0 := time.Now()
		if err := reg.create(ctx, []string{path}); err != nil {
			return summary{}, err
		}
		arrived, err := w.waitFor(ctx, prefix+path, cfg.waitMax)
		if err != nil {
			return summary{}, fmt.Errorf("entry %d: %w", i, err)
		}
		samples = append(samples, arrived.Sub(t0))
		fmt.Printf("spire-bench: entry %d/%d → SVID in %s\n", i+1, cfg.entries, dur(arrived.Sub(t0)))
	}
	return summarize(samples), nil
}

// mintResult is what the minting measurement found.
type mintResult struct {
	createRPC time.Duration // duration of the BatchCreateEntry call
	first     time.Duration // create start → first of the SVIDs at the watcher
	all       time.Duration // create start → last of the SVIDs at the watcher
	updates   int           // watch updates between first and last
}

// measureMint creates cfg.mint entries in one BatchCreateEntry call and
// waits until the watcher holds an SVID for every one.
func measureMint(ctx context.Context, cfg benchConfig, reg *registrar, w *watcher) (mintResult, error) {
	prefix := spiffeid.RequireTrustDomainFromString(reg.td).ID().String()
	paths := make([]string, cfg.mint)
	ids := make([]string, cfg.mint)
	for i := range paths {
		paths[i] = fmt.Sprintf("/bench/mint/%d", i)
		ids[i] = prefix + paths[i]
	}
	updatesBefore := w.updateCount()
	t0 := time.Now()
	if err := reg.create(ctx, paths); err != nil {
		return mintResult{}, err
	}
	createRPC := time.Since(t0)
	fmt.Printf("spire-bench: created %d entries in %s; waiting for SVIDs\n", cfg.mint, dur(createRPC))
	first, last, err := w.waitForAll(ctx, ids, cfg.waitMax)
	if err != nil {
		return mintResult{}, fmt.Errorf("minting: %w", err)
	}
	return mintResult{
		createRPC: createRPC,
		first:     first.Sub(t0),
		all:       last.Sub(t0),
		updates:   w.updateCount() - updatesBefore,
	}, nil
}

// registrar creates registration entries through the server's local API.
type registrar struct {
	client entryv1.EntryClient
	parent *types.SPIFFEID
	td     string
	uid    string
}

// create makes one entry per path, all selecting unix:uid:<uid>, in one
// BatchCreateEntry call, and fails unless every entry was created.
func (r *registrar) create(ctx context.Context, paths []string) error {
	entries := make([]*types.Entry, len(paths))
	for i, path := range paths {
		entries[i] = &types.Entry{
			SpiffeId:  &types.SPIFFEID{TrustDomain: r.td, Path: path},
			ParentId:  r.parent,
			Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + r.uid}},
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := r.client.BatchCreateEntry(callCtx, &entryv1.BatchCreateEntryRequest{
		Entries:    entries,
		OutputMask: &types.EntryMask{},
	})
	if err != nil {
		return fmt.Errorf("create entries: %w", err)
	}
	for i, res := range resp.Results {
		if c := codes.Code(res.GetStatus().GetCode()); c != codes.OK {
			return fmt.Errorf("create entry %s: %s: %s", paths[i], c, res.GetStatus().GetMessage())
		}
	}
	return nil
}

// watcher is a workloadapi.X509ContextWatcher that records when each SPIFFE
// ID first appears in a watch update. It is safe for concurrent use.
type watcher struct {
	mu        sync.Mutex
	firstSeen map[string]time.Time
	updates   int
	lastErr   error
	changed   chan struct{} // closed and replaced on every update
}

func newWatcher() *watcher {
	return &watcher{firstSeen: make(map[string]time.Time), changed: make(chan struct{})}
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.updates++
	w.lastErr = nil
	for _, svid := range c.SVIDs {
		id := svid.ID.String()
		if _, ok := w.firstSeen[id]; !ok {
			w.firstSeen[id] = now
		}
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watcher) OnX509ContextWatchError(err error) {
	if grpcstatus.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
}

func (w *watcher) updateCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.updates
}

// waitFor returns when id was first seen, waiting at most limit.
func (w *watcher) waitFor(ctx context.Context, id string, limit time.Duration) (time.Time, error) {
	first, _, err := w.waitForAll(ctx, []string{id}, limit)
	return first, err
}

// waitForAll waits, at most limit, until every id has been seen and returns
// the earliest and latest first-seen times among them.
func (w *watcher) waitForAll(ctx context.Context, ids []string, limit time.Duration) (first, last time.Time, err error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		missing := 0
		first, last = time.Time{}, time.Time{}
		for _, id := range ids {
			t, ok := w.firstSeen[id]
			if !ok {
				missing++
				continue
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		changed, lastErr := w.changed, w.lastErr
		w.mu.Unlock()
		if missing == 0 {
			return first, last, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			msg := fmt.Sprintf("%d of %d SVIDs not received within %s", missing, len(ids), limit)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last watch error: %v)", lastErr)
			}
			return first, last, errors.New(msg)
		case <-ctx.Done():
			return first, last, ctx.Err()
		}
	}
}

// summary is the distribution of a set of latency samples.
type summary struct {
	n                        int
	p50, p99, min, max, mean time.Duration
}

// summarize computes nearest-rank percentiles of samples.
func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var total time.Duration
	for _, s := range sorted {
		total += s
	}
	rank := func(p float64) time.Duration {
		i := int(float64(len(sorted))*p+0.999999) - 1
		return sorted[max(0, min(i, len(sorted)-1))]
	}
	return summary{
		n:    len(sorted),
		p50:  rank(0.50),
		p99:  rank(0.99),
		min:  sorted[0],
		max:  sorted[len(sorted)-1],
		mean: total / time.Duration(len(sorted)),
	}
}

// dur prints a duration with a precision that suits its size.
func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3fs", d.Seconds())
	}
}

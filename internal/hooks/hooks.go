// Package hooks owns what runs after a declared certificate's files are
// written: signal a process by its PID file, run a command, call an HTTP
// URL — each within its timeout, in the order declared, a failure either
// reported (continue) or ending the rest (stop). The files are written
// before any hook runs, so a hook that fails or hangs never costs the
// certificate.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/manifest"
)

// Result is what one hook did.
type Result struct {
	Name     string
	Err      error // nil when it succeeded
	Skipped  bool  // an earlier hook failed with onFailure: stop
	Duration time.Duration
	Output   string // a command's output, at most maxOutput bytes
}

// maxOutput bounds what is kept of a command's output.
const maxOutput = 4 << 10

// Run runs hooks in order and returns a result for each.
func Run(ctx context.Context, hooks []manifest.Hook) []Result {
	results := make([]Result, len(hooks))
	stopped := false
	for i, h := range hooks {
		r := &results[i]
		r.Name = name(i, h)
		if stopped {
			r.Skipped = true
			continue
		}
		timeout, err := duration.Parse(h.Timeout)
		if err != nil || timeout <= 0 {
			timeout = 30 * time.Second
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		switch {
		case h.Signal != nil:
			r.Err = signal(h.Signal)
		case h.HTTP != nil:
			r.Err = call(hctx, h.HTTP)
		case len(h.Command) > 0:
			r.Output, r.Err = command(hctx, h.Command)
		default:
			r.Err = errors.New("hooks: the hook does nothing")
		}
		if r.Err != nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
			within := timeout.String() // sub-second timeouts, which Format rounds away
			if timeout >= time.Second {
				within = duration.Format(timeout)
			}
			r.Err = fmt.Errorf("did not finish within %s and was stopped: %w", within, r.Err)
		}
		cancel()
		r.Duration = time.Since(start)
		if r.Err != nil && h.OnFailure == "stop" {
			stopped = true
		}
	}
	return results
}

func name(i int, h manifest.Hook) string {
	if h.Name != "" {
		return h.Name
	}
	switch {
	case h.Signal != nil:
		return "signal " + h.Signal.PIDFile
	case h.HTTP != nil:
		return h.HTTP.Method + " " + h.HTTP.URL
	case len(h.Command) > 0:
		return h.Command[0]
	}
	return "hook " + strconv.Itoa(i)
}

// signal sends the hook's signal to the PID its file holds.
func signal(s *manifest.SignalHook) error {
	data, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return fmt.Errorf("read the PID file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("%s does not hold a process id", s.PIDFile)
	}
	return sendSignal(pid, s.Signal)
}

// call makes the hook's HTTP request; any 2xx answer is success.
func call(ctx context.Context, h *manifest.HTTPHook) error {
	req, err := http.NewRequestWithContext(ctx, h.Method, h.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "meshpki-hook")
	// The URL is the manifest's own, on this machine: no proxy, no redirects.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", h.URL, resp.Status)
	}
	return nil
}

// command runs argv (no shell) and returns its output, bounded; at the
// timeout the command and the processes it started are killed.
func command(ctx context.Context, argv []string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &limited{w: &out, n: maxOutput}
	cmd.Stderr = cmd.Stdout
	killGroup(cmd)
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return out.String(), err
}

// limited keeps the first n bytes written and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

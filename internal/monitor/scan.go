package monitor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshpki/meshpki/internal/netguard"
)

// Result is what scanning one target found: the chain it presented or
// held, and the findings. A file holding several chains gives one Result
// for each, named PATH#2, PATH#3… after the first.
type Result struct {
	Target   string     `json:"target"`
	Kind     Kind       `json:"kind"`
	Error    string     `json:"error"` // "" when the target was read
	Chain    []CertInfo `json:"chain"`
	Findings []Finding  `json:"findings"`
	// Silent marks a target expanded from a CIDR or a directory that had
	// nothing to scan (no listener, no certificate); it is not an error.
	Silent bool `json:"-"`
	// Scope is the argument the target came from (Target.Scope).
	Scope string `json:"-"`
	// Certs is the chain itself, leaf first.
	Certs []*x509.Certificate `json:"-"`
	// Source is where the chain came from, as the checks saw it.
	Source Source `json:"-"`
}

// Scanner scans targets with bounded concurrency.
type Scanner struct {
	// Policy runs the checks (required).
	Policy *Policy
	// Concurrency bounds the targets scanned at once (default 64).
	Concurrency int
	// Timeout bounds each endpoint: connect, STARTTLS and handshake
	// (default 5s).
	Timeout time.Duration
	// PKCS12Password opens PKCS#12 files.
	PKCS12Password string
	// Progress, if set, is called after each target with how many are
	// done; calls come from one goroutine at a time.
	Progress func(done, total int)
	// Dialer connects to endpoints (default: a plain net.Dialer). The
	// server's carries a netguard.Guard.
	Dialer *net.Dialer
}

// DefaultConcurrency and DefaultTimeout are Scanner's defaults.
const (
	DefaultConcurrency = 64
	DefaultTimeout     = 5 * time.Second
)

// Scan scans targets and returns their results in target order. It
// returns when every target is done or ctx ends (the rest then carry
// ctx's error); no goroutine outlives it.
func (s *Scanner) Scan(ctx context.Context, targets []Target) []Result {
	workers := s.Concurrency
	if workers <= 0 {
		workers = DefaultConcurrency
	}
	workers = min(workers, len(targets))
	results := make([][]Result, len(targets))
	var (
		next     atomic.Int64
		done     int
		progress sync.Mutex
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				results[i] = s.scanOne(ctx, targets[i])
				if s.Progress != nil {
					progress.Lock()
					done++
					s.Progress(done, len(targets))
					progress.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	var out []Result
	for _, rs := range results {
		out = append(out, rs...)
	}
	return out
}

func (s *Scanner) scanOne(ctx context.Context, t Target) []Result {
	if err := ctx.Err(); err != nil {
		return []Result{{Target: t.Name, Scope: t.Scope, Kind: t.Kind, Error: err.Error()}}
	}
	if t.Kind == KindFile {
		return s.scanFile(t)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := s.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	chain, err := dialChain(ctx, d, t)
	if err != nil {
		return []Result{{Target: t.Name, Scope: t.Scope, Kind: t.Kind, Error: err.Error(), Silent: t.Expanded && silent(err)}}
	}
	return []Result{s.result(t, t.Name, chain, Source{Endpoint: true, VerifyName: t.VerifyName})}
}

// silent reports whether err means nothing listens there. A connection
// the server's guard refused is not silence.
func silent(err error) bool {
	var (
		connect *stepError
		refused *netguard.RefusedError
	)
	return errors.As(err, &connect) && connect.step == "connect" && !errors.As(err, &refused)
}

func (s *Scanner) scanFile(t Target) []Result {
	certs, err := ReadFile(t.Path, s.PKCS12Password)
	if err != nil {
		quiet := t.Expanded && (errors.Is(err, ErrNoCertificate) || errors.Is(err, fs.ErrPermission))
		return []Result{{Target: t.Name, Scope: t.Scope, Kind: t.Kind, Error: err.Error(), Silent: quiet}}
	}
	var out []Result
	for i, chain := range SplitChains(certs) {
		name := t.Name
		if i > 0 {
			name = fmt.Sprintf("%s#%d", t.Name, i+1)
		}
		out = append(out, s.result(t, name, chain, Source{}))
	}
	return out
}

func (s *Scanner) result(t Target, name string, chain []*x509.Certificate, src Source) Result {
	return s.Policy.Result(t.Scope, name, t.Kind, chain, src)
}

// Result is the Result of reading chain at target name under scope: the
// chain described and checked.
func (p *Policy) Result(scope, name string, kind Kind, chain []*x509.Certificate, src Source) Result {
	r := Result{Target: name, Scope: scope, Kind: kind, Findings: p.Check(chain, src), Certs: chain, Source: src}
	for _, c := range chain {
		r.Chain = append(r.Chain, Describe(c))
	}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	return r
}

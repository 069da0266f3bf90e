package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"runtime"
	"time"

	"github.com/meshpki/meshpki/internal/client"
	"github.com/meshpki/meshpki/internal/declared"
)

// renewDaemon is 'cert renew --daemon': the renewal loop of a host with no
// agent.
type renewDaemon struct {
	on          bool
	before      time.Duration // renew when the certificate expires within this; 0: a third of its lifetime
	exec        string        // run after each renewal
	execTimeout time.Duration
}

// Backoff between failed renewals.
const (
	renewRetryFirst = time.Second
	renewRetryMax   = 5 * time.Minute
)

// run renews whenever the certificate is due until ctx ends (nil) or it
// expires unrenewed (an error).
func (d *renewDaemon) run(ctx context.Context, s *streams, conn *connectFlags, renew func(context.Context) (*x509.Certificate, error)) error {
	t, err := conn.resolve()
	if err != nil {
		return err
	}
	leaf := t.cred.Leaf
	var last time.Time // of the last renewal
	for {
		at := declared.RenewalTime(leaf, d.before, last, func(max time.Duration) time.Duration { return rand.N(max) })
		fmt.Fprintf(s.err, "meshpki: %s %s; renewing at %s\n", conn.certFile, expiresPhrase(leaf.NotAfter, time.Now()), at.UTC().Format(time.RFC3339))
		if !sleepUntil(ctx, at) {
			return nil
		}
		wait := renewRetryFirst
		for {
			next, err := renew(ctx)
			if err == nil {
				leaf, last = next, time.Now()
				d.afterRenewal(ctx, s)
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			// An expired certificate cannot renew itself, and one the CA
			// refuses (revoked, its provisioner gone) will not be renewed by
			// asking again; a CA that is down or busy may answer later.
			var expired *expiredError
			var api *client.APIError
			if errors.As(err, &expired) || errors.As(err, &api) && api.Status >= 400 && api.Status < 500 &&
				api.Status != http.StatusRequestTimeout && api.Status != http.StatusTooManyRequests {
				return err
			}
			fmt.Fprintf(s.err, "meshpki: renewal failed, trying again in %s: %v\n", wait, err)
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				return nil
			}
			wait = min(2*wait, renewRetryMax)
		}
	}
}

// afterRenewal runs --exec, if any, within --exec-timeout; a failure is
// reported, not fatal: the certificate is already written.
func (d *renewDaemon) afterRenewal(ctx context.Context, s *streams) {
	if d.exec == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.execTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if runtime.GOOS == "windows" {
		cmd = exec.CommandContext(ctx, "cmd", "/C", d.exec)
	} else {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", d.exec)
	}
	cmd.Stdout, cmd.Stderr = s.err, s.err
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		fmt.Fprintf(s.err, "meshpki: --exec did not finish within %s and was stopped\n", d.execTimeout)
	case err != nil:
		fmt.Fprintf(s.err, "meshpki: --exec failed: %v\n", err)
	}
}

// sleepUntil waits until t, or reports false if ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

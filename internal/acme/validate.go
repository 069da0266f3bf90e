package acme

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/meshpki/meshpki/internal/acme/validation"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/store"
)

// validationJob is one challenge to validate. done is closed once the
// result is recorded.
type validationJob struct {
	authz, challenge string
	typ              string
	identifier       ident
	token, keyAuth   string
	done             chan struct{}
}

// validateLoop is one of MaxValidations workers: it validates queued
// challenges and records each result until ctx ends.
func (s *Server) validateLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-s.jobs:
			start := time.Now()
			err := s.validator.Validate(ctx, job.typ, validation.Identifier{Type: job.identifier.Type, Value: job.identifier.Value}, job.token, job.keyAuth)
			if ctx.Err() != nil {
				// The server stops: the challenge stays processing, and the
				// leader validates it again (RecoverValidations).
				close(job.done)
				return
			}
			var prob *Problem
			if err != nil {
				prob = validationProblem(err)
			}
			s.metrics.observeValidation(job.typ, prob, time.Since(start))
			s.finish(context.WithoutCancel(ctx), job, prob)
		}
	}
}

// validationProblem is the problem recorded on a challenge that failed.
func validationProblem(err error) *Problem {
	var ve *validation.Error
	if errors.As(err, &ve) {
		status := http.StatusBadRequest
		if ve.Type == probUnauthorized {
			status = http.StatusForbidden
		}
		return &Problem{Type: errorNS + ve.Type, Detail: ve.Detail, Status: status}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Problem{Type: errorNS + "connection", Detail: "validation did not finish in time", Status: http.StatusBadRequest}
	}
	return &Problem{Type: errorNS + probServerInternal, Detail: "validation failed: " + err.Error(), Status: http.StatusInternalServerError}
}

// finish records a validation result (prob nil means valid) and releases
// whoever waits on the job.
func (s *Server) finish(ctx context.Context, job *validationJob, prob *Problem) {
	defer close(job.done)
	res := store.ChallengeResult{AuthorizationID: job.authz, ChallengeID: job.challenge, Valid: prob == nil, At: s.now()}
	if prob != nil {
		res.Error, _ = json.Marshal(prob)
	}
	results, err := s.st.FinishACMEChallenges(ctx, []store.ChallengeResult{res})
	if err == nil && len(results) == 1 {
		err = results[0]
	}
	if err != nil && !errors.Is(err, store.ErrStateChanged) {
		s.log.Error("acme: recording a validation result", "authorization", job.authz, "challenge", job.challenge, "error", err)
	}
}

// RecoverValidations validates again, every recoverEvery until ctx ends,
// challenges left processing for longer than a validation may take: their
// replica died or stopped while validating. The result is recorded as any
// other; a validation that finished meanwhile makes it a no-op (the store
// takes one result). One replica runs it: the elected leader.
func (s *Server) RecoverValidations(ctx context.Context) error {
	return periodic.Run(ctx, recoverEvery, &s.recoverWaker, func(ctx context.Context) { s.recoverStale(ctx) })
}

// recoverEvery is how often the leader looks for stale validations.
const recoverEvery = 5 * time.Second

// recoverStale queues a validation for each stale challenge; it returns
// how many it queued.
func (s *Server) recoverStale(ctx context.Context) int {
	cutoff := s.now().Add(-s.validator.Timeout() - 5*time.Second)
	stale, err := s.st.StaleACMEValidations(ctx, cutoff, 4*s.workers)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("acme: find stale validations", "error", err)
		}
		return 0
	}
	queued := 0
	for _, a := range stale {
		idx := slices.IndexFunc(a.Challenges, func(c store.ACMEChallenge) bool { return c.Status == store.ACMEProcessing })
		if idx < 0 {
			continue
		}
		acct, err := s.st.GetACMEAccount(ctx, a.AccountID)
		if err != nil {
			s.log.Error("acme: stale validation's account", "authorization", a.ID, "error", err)
			continue
		}
		c := a.Challenges[idx]
		job := &validationJob{authz: a.ID, challenge: c.ID, typ: c.Type, identifier: a.Identifier, token: c.Token,
			keyAuth: c.Token + "." + acct.Thumbprint, done: make(chan struct{})}
		select {
		case s.jobs <- job:
			queued++
			s.log.Info("acme: validating again a challenge its replica left processing", "authorization", a.ID, "challenge", c.ID)
		case <-ctx.Done():
			return queued
		}
	}
	return queued
}

package acme

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/meshpki/meshpki/internal/acme/validation"
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

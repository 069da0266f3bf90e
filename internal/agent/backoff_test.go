package agent

import (
	"testing"
	"time"
)

// The backoff's random half comes from Config.Jitter, so its bounds are
// checked exactly rather than by sampling.
func TestBackoffDrawsFromJitter(t *testing.T) {
	var asked []time.Duration
	low := &Agent{jitter: func(max time.Duration) time.Duration { asked = append(asked, max); return 0 }}
	high := &Agent{jitter: func(max time.Duration) time.Duration { return max }}
	for _, c := range []struct {
		attempt   int
		low, high time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{9, 15 * time.Second, 30 * time.Second},
		{50, 15 * time.Second, 30 * time.Second},
	} {
		if got := low.backoff(c.attempt); got != c.low {
			t.Errorf("attempt %d, no jitter: %v, want %v", c.attempt, got, c.low)
		}
		if got := high.backoff(c.attempt); got != c.high {
			t.Errorf("attempt %d, full jitter: %v, want %v", c.attempt, got, c.high)
		}
	}
	if asked[0] != 50*time.Millisecond {
		t.Errorf("jitter asked for up to %v at attempt 0, want 50ms", asked[0])
	}
}

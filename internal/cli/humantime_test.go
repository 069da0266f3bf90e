package cli

import (
	"testing"
	"time"
)

func TestHumanDurationKeepsTwoLargestUnits(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "0s"},
		{45 * time.Second, "45s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{3*time.Hour + 12*time.Minute, "3h12m"},
		{3*time.Hour + 12*time.Minute + 59*time.Second, "3h12m"}, // truncated, not rounded
		{48 * time.Hour, "2d"},
		{52 * time.Hour, "2d4h"},
		{52*time.Hour + 59*time.Minute, "2d4h"},
		{400 * 24 * time.Hour, "400d"},
		{-(2*24*time.Hour + 4*time.Hour), "2d4h"}, // sign is the caller's business
	}
	for _, tt := range tests {
		if got := humanDuration(tt.in); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpiresPhraseSaysFutureOrPast(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		notAfter time.Time
		want     string
	}{
		{"future", now.Add(3*time.Hour + 12*time.Minute), "expires in 3h12m"},
		{"future in days", now.Add(7 * 24 * time.Hour), "expires in 7d"},
		{"past", now.Add(-(2*24*time.Hour + 4*time.Hour)), "expired 2d4h ago"},
		{"just past", now.Add(-2 * time.Hour), "expired 2h ago"},
		{"exactly now counts as expired", now, "expired 0s ago"},
		{"one second left", now.Add(time.Second), "expires in 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := expiresPhrase(tt.notAfter, now); got != tt.want {
				t.Errorf("expiresPhrase = %q, want %q", got, tt.want)
			}
		})
	}
}

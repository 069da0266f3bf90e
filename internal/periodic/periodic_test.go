package periodic

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunWakesAndStops(t *testing.T) {
	var w Waker
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Run(ctx, time.Hour, &w, func(context.Context) { runs.Add(1) })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runs.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	w.Wake()
	for runs.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if runs.Load() != 2 {
		t.Fatalf("%d runs, want one at once and one when woken (the interval is an hour)", runs.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.Wake() // never blocks, even with nobody running
	w.Wake()
}

package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// CheckSignals: a signal sent through b reaches a watcher of a, two
// stores of one database; other, a store beside them that must not hear
// them (another schema), hears only its own. Watch returns nil when its
// context ends.
func CheckSignals(t *testing.T, a, b, other store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := func(s store.Store) (<-chan string, <-chan error) {
		got, done := make(chan string, 64), make(chan error, 1)
		go func() {
			done <- s.Watch(ctx, func(topic string) {
				select {
				case got <- topic:
				default:
				}
			})
		}()
		return got, done
	}
	// Signals sent before a watcher listens are lost: send until heard.
	until := func(send func(), got <-chan string, want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			send()
			select {
			case topic := <-got:
				if topic == want {
					return
				}
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("no signal %q within 10s", want)
			}
		}
	}
	gotA, doneA := watch(a)
	gotOther, doneOther := watch(other)
	until(func() {
		if err := b.Signal(ctx, "schedules"); err != nil {
			t.Fatal(err)
		}
	}, gotA, "schedules")
	until(func() {
		if err := other.Signal(ctx, "mine"); err != nil {
			t.Fatal(err)
		}
	}, gotOther, "mine")
	for range 3 {
		if err := a.Signal(ctx, "alerts"); err != nil {
			t.Fatal(err)
		}
	}
	until(func() {}, gotA, "alerts")
	time.Sleep(100 * time.Millisecond)
	for len(gotOther) > 0 {
		if topic := <-gotOther; topic != "mine" {
			t.Fatalf("another store heard %q", topic)
		}
	}
	if err := a.Signal(ctx, ""); err == nil {
		t.Error("an empty topic was sent")
	}
	cancel()
	for _, done := range []<-chan error{doneA, doneOther} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch after its context ended: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Watch did not return when its context ended")
		}
	}
}

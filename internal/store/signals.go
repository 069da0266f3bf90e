package store

import "context"

// Signals tell the processes that share a store that something changed,
// so that the one that acts on it — the leader — acts now rather than at
// its next poll: a schedule asked to run through a follower, an alert rule
// made there, a scan report it received. A signal may be lost (a watcher
// reconnecting); the pollers stay the guarantee, signals only shorten
// their wait.
type Signals interface {
	// Signal sends topic to every process watching the store, this one
	// included.
	Signal(ctx context.Context, topic string) error
	// Watch calls fn with the topic of every signal sent while it
	// watches, one at a time, until ctx ends (nil) or the store's
	// connection fails (an error; watch again).
	Watch(ctx context.Context, fn func(topic string)) error
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// LockFile is the file in the data directory a server holds locked while it
// runs on the directory's SQLite store.
const LockFile = "server.lock"

// errLocked is what the platform's lockFile returns when another process
// holds the lock.
var errLocked = errors.New("locked by another process")

// dataDirLock is the running server's hold on its data directory.
type dataDirLock struct{ f *os.File }

// lockDataDir takes the data directory for this process, so that a second
// server on the same SQLite store refuses to start instead of running
// beside the first and overwriting server.json. The lock is the kernel's
// (flock, LockFileEx): it ends with the process, even on a crash.
func lockDataDir(dir string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: lock data directory: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("server: another meshpki server is running on %s (%s); stop it, or give this one another --data", dir, describeRunning(dir))
		}
		return nil, fmt.Errorf("server: lock data directory: %w", err)
	}
	return &dataDirLock{f: f}, nil
}

// adminLockFile serialises writing the bootstrap admin's credential pair.
const adminLockFile = "secrets/admin.lock"

// lockAdminCredential waits until this process alone may replace
// DIR/secrets/admin.{crt,key}, so that replicas sharing DIR never leave a
// pair whose key is one replica's and certificate another's. release
// ends the hold (closing the file releases the kernel's lock).
func lockAdminCredential(ctx context.Context, dir string) (release func(), err error) {
	path := filepath.Join(dir, adminLockFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := lockFile(f)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, errLocked) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// describeRunning names the server recorded in DIR/server.json.
func describeRunning(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return "still starting: no server.json yet"
	}
	var st State
	if json.Unmarshal(data, &st) != nil || st.PID == 0 {
		return "its server.json is unreadable"
	}
	return fmt.Sprintf("pid %d, %s", st.PID, st.URL)
}

func (l *dataDirLock) release() {
	if l != nil {
		l.f.Close() // closing the file releases the lock
	}
}

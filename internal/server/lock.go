package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

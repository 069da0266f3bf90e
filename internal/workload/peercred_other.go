//go:build !linux

package workload

import (
	"errors"
	"net"
)

// errNeedsLinux is why the Workload API cannot attest callers here.
var errNeedsLinux = errors.New("workload: the Workload API attests callers by SO_PEERCRED and /proc, which need Linux")

// exited is never known without pidfds.
func (c *PeerCredentials) exited() bool { return c.goneAtConnect }

func readPeerCredentials(*net.UnixConn) (*PeerCredentials, error) { return nil, errNeedsLinux }

// supported says why the Workload API cannot be served on this platform.
func supported() error { return errNeedsLinux }

//go:build linux

package workload

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// exited reports whether the connecting process is known to have exited. The
// answer is reliable only when a pidfd was taken; without one it is false.
func (c *PeerCredentials) exited() bool {
	if c.goneAtConnect {
		return true
	}
	if c.pidfd == nil {
		return false
	}
	rc, err := c.pidfd.SyscallConn()
	if err != nil {
		return true
	}
	var gone bool
	// Control holds a reference, so a concurrent close of the connection
	// cannot close (and let the kernel reuse) the descriptor under us.
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			// A pidfd becomes readable when its process exits.
			gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
			return
		}
	})
	if err != nil {
		return true // the connection was closed
	}
	return gone
}

// readPeerCredentials reads SO_PEERCRED and takes a pidfd of the peer:
// SO_PEERPIDFD (Linux 6.5) names exactly the process that connected;
// pidfd_open on its pid is the fallback, racing only with an exit in the
// moment since connect.
func readPeerCredentials(uc *net.UnixConn) (*PeerCredentials, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("workload: peer credentials: %w", err)
	}
	var (
		ucred   *unix.Ucred
		credErr error
		pidfd   = -1
		pidfdOK bool
	)
	err = raw.Control(func(fd uintptr) {
		ucred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd, pidfdOK = pfd, true
		}
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return nil, fmt.Errorf("workload: reading SO_PEERCRED: %w", err)
	}
	creds := &PeerCredentials{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PID:            ucred.Pid,
		UID:            ucred.Uid,
		GID:            ucred.Gid,
	}
	if !pidfdOK && creds.PID > 0 {
		pfd, err := unix.PidfdOpen(int(creds.PID), 0)
		switch {
		case err == nil:
			pidfd = pfd
		case errors.Is(err, unix.ESRCH):
			creds.goneAtConnect = true
		}
		// Other errors (no pidfd support): attest by pid alone.
	}
	if pidfd >= 0 {
		unix.CloseOnExec(pidfd)
		creds.pidfd = os.NewFile(uintptr(pidfd), fmt.Sprintf("pidfd:%d", creds.PID))
	}
	return creds, nil
}

// supported reports whether the Workload API can be served here: on Linux,
// always.
func supported() error { return nil }

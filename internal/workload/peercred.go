package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// PeerCredentials are the kernel's record of the process at the other end of
// a Workload API connection, read with SO_PEERCRED when it connected. They
// are the connection's peer.AuthInfo.
type PeerCredentials struct {
	credentials.CommonAuthInfo
	PID int32  // the connecting process; 0 when not visible in our pid namespace
	UID uint32 // its effective uid when it connected
	GID uint32 // its effective gid when it connected

	// pidfd refers to the connecting process itself, not to whatever holds
	// its pid later; nil when the kernel offers no pidfds.
	pidfd *os.File
	// goneAtConnect records that the process had exited before we could
	// take a pidfd of it.
	goneAtConnect bool
}

// AuthType implements credentials.AuthInfo.
func (*PeerCredentials) AuthType() string { return "unix-peercred" }

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

// peerCredTransport is a credentials.TransportCredentials for a Unix socket
// server: its handshake exchanges nothing and records the peer's credentials.
type peerCredTransport struct{}

func (peerCredTransport) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workload: connection is %T, not a Unix socket", conn)
	}
	creds, err := readPeerCredentials(uc)
	if err != nil {
		return nil, nil, err
	}
	return &credConn{UnixConn: uc, creds: creds}, creds, nil
}

func (peerCredTransport) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workload: peer credentials are for the server side only")
}

func (peerCredTransport) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (t peerCredTransport) Clone() credentials.TransportCredentials { return t }

func (peerCredTransport) OverrideServerName(string) error { return nil }

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

// credConn closes the peer's pidfd with the connection.
type credConn struct {
	*net.UnixConn
	creds *PeerCredentials
	once  sync.Once
}

func (c *credConn) Close() error {
	err := c.UnixConn.Close()
	c.once.Do(func() {
		if c.creds.pidfd != nil {
			c.creds.pidfd.Close()
		}
	})
	return err
}

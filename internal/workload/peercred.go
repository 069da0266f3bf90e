package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

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

package workload

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadPeerCredentialsOfALiveConnection(t *testing.T) {
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	client, err := net.Dial("unix", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := lis.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}

	wrapped, info, err := peerCredTransport{}.ServerHandshake(conn)
	if err != nil {
		t.Fatal(err)
	}
	creds := info.(*PeerCredentials)
	if creds.PID != int32(os.Getpid()) || creds.UID != uint32(os.Getuid()) || creds.GID != uint32(os.Getgid()) {
		t.Errorf("credentials = pid %d uid %d gid %d, want ours", creds.PID, creds.UID, creds.GID)
	}
	if creds.pidfd == nil {
		t.Log("no pidfd: kernel without SO_PEERPIDFD and pidfd_open")
	}
	if creds.exited() {
		t.Error("live peer reported as exited")
	}
	wrapped.Close()
	if creds.pidfd != nil && !creds.exited() {
		t.Error("after the connection closed, its pidfd still answers")
	}
}

func TestPidfdNoticesExit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperWaitEnv+"=1", quickRaceExit)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		stdin.Close()
		cmd.Wait()
		if os.Getenv("CI") == "true" {
			t.Fatalf("pidfd_open: %v (CI's kernel has pidfds)", err)
		}
		t.Skipf("pidfd_open: %v", err)
	}
	creds := &PeerCredentials{PID: int32(cmd.Process.Pid), pidfd: os.NewFile(uintptr(pidfd), "pidfd")}
	defer creds.pidfd.Close()

	if creds.exited() {
		t.Error("running process reported as exited")
	}
	stdin.Close() // the helper exits at EOF
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !creds.exited() {
		t.Error("exited process not reported as exited")
	}
}

// helperWaitEnv makes the test binary (see TestMain) wait for EOF on stdin and exit.
const helperWaitEnv = "MESHPKI_WORKLOAD_TEST_HELPER_WAIT"

func waitForStdinEOF() {
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

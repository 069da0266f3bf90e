package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/status"
)

// helperEnv, when set to a Workload API address, makes the test binary a
// workload: it fetches its X.509-SVID and prints "ID <spiffe id>" or
// "ERR <code> <message>".
const helperEnv = "MESHPKI_WORKLOAD_TEST_HELPER_ADDR"

// TestMain makes the test binary a workload when a test runs it as a child
// process (see helperEnv and helperWaitEnv), instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv(helperWaitEnv) == "1" {
		waitForStdinEOF()
	}
	if addr := os.Getenv(helperEnv); addr != "" {
		os.Exit(helperFetch(addr))
	}
	os.Exit(m.Run())
}

// helperFetch is the child workload: it fetches its X.509-SVID and prints
// "ID <spiffe id>" or "ERR <code> <message>".
func helperFetch(addr string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err == nil {
		var svid *x509svid.SVID
		if svid, err = c.FetchX509SVID(ctx); err == nil {
			fmt.Println("ID", svid.ID)
			return 0
		}
	}
	fmt.Println("ERR", status.Code(err), status.Convert(err).Message())
	return 0
}

// quickRaceExit spares a child built with -race the race detector's
// one-second pause at exit.
const quickRaceExit = "GORACE=atexit_sleep_ms=0"

// requireRoot skips a test that needs root, except in CI, where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test runs child processes as other uids and needs root; CI runs tests as root")
	}
	t.Skip("needs root to run child processes as other uids")
}

func TestDifferentUIDsGetDifferentIdentities(t *testing.T) {
	requireRoot(t)
	// Other uids must reach the socket and the test binary: open up the
	// temporary directory (t.TempDir makes it and its parent 0700).
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "ws")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a 0700 build directory: run a copy.
	exe := filepath.Join(dir, "workload.test")
	copyFile(t, os.Args[0], exe)

	const uidA, uidB, uidC = 54001, 54002, 54003
	src := newFakeSource(t)
	src.add(t, "a", spiffeIDOf("a"), "unix:uid:"+strconv.Itoa(uidA))
	src.add(t, "b", spiffeIDOf("b"), "unix:uid:"+strconv.Itoa(uidB), "unix:gid:"+strconv.Itoa(uidB), "unix:path:"+exe)
	src.add(t, "b-elsewhere", spiffeIDOf("b-elsewhere"), "unix:uid:"+strconv.Itoa(uidB), "unix:path:/usr/local/bin/b")
	srv := startServerIn(t, dir, src)

	tests := []struct {
		uid  uint32
		want string
	}{
		{uidA, "ID " + spiffeIDOf("a")},
		{uidB, "ID " + spiffeIDOf("b")},
		{uidC, fmt.Sprintf("ERR PermissionDenied no identity issued: no registration entry matches this workload (uid %d, pid ", uidC)},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(int(tt.uid)), func(t *testing.T) {
			t.Parallel()
			out := runAs(t, exe, srv.Addr(), tt.uid)
			if !strings.HasPrefix(out, tt.want) {
				t.Errorf("child as uid %d printed %q, want %q", tt.uid, out, tt.want)
			}
		})
	}
}

// runAs runs the test binary exe as a workload under uid (and gid = uid) and
// returns the first line it printed.
func runAs(t *testing.T, exe, addr string, uid uint32) string {
	t.Helper()
	var out []byte
	var err error
	for range 10 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = []string{helperEnv + "=" + addr, "PATH=/usr/bin:/bin", quickRaceExit}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		cmd.Stderr = os.Stderr
		out, err = cmd.Output()
		// A copy just written may still be open for writing in a child
		// forked meanwhile (ETXTBSY, golang.org/issue/22315): try again.
		if !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("child as uid %d: %v\n%s", uid, err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

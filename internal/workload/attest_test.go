package workload

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestAttestCurrentProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selectors, err := Attest(int32(os.Getpid()), uint32(os.Getuid()), uint32(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		myUIDSelector,
		myGIDSelector,
		"unix:path:" + exe,
		"unix:sha256:" + fileSHA256(t, exe),
	}
	if u, err := user.Current(); err == nil {
		want = append(want, "unix:user:"+u.Username)
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		want = append(want, "unix:gid:"+strconv.Itoa(g))
		if grp, err := user.LookupGroupId(strconv.Itoa(g)); err == nil {
			want = append(want, "unix:group:"+grp.Name)
		}
	}
	for _, sel := range want {
		if !slices.Contains(selectors, sel) {
			t.Errorf("selector %s missing from %v", sel, selectors)
		}
	}
	if got := slices.Compact(slices.Sorted(slices.Values(selectors))); len(got) != len(selectors) {
		t.Errorf("duplicate selectors in %v", selectors)
	}
}

func TestAttestUsesPeerCredentialsNotProc(t *testing.T) {
	// The uid and gid come from the socket, whatever the process is now.
	selectors, err := Attest(int32(os.Getpid()), 4242, 4343)
	if err != nil {
		t.Fatal(err)
	}
	for _, sel := range []string{"unix:uid:4242", "unix:gid:4343"} {
		if !slices.Contains(selectors, sel) {
			t.Errorf("selector %s missing from %v", sel, selectors)
		}
	}
	if slices.Contains(selectors, myUIDSelector) && os.Getuid() != 4242 {
		t.Errorf("selectors %v carry the process's uid, not the peer's", selectors)
	}
}

func TestAttestExitedProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), quickRaceExit)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	_, err := Attest(pid, 0, 0)
	var exited *ExitedError
	if !errors.As(err, &exited) || exited.PID != pid {
		t.Fatalf("err = %v, want ExitedError for pid %d", err, pid)
	}
}

func TestAttestPIDNotVisible(t *testing.T) {
	if _, err := Attest(0, 0, 0); !errors.Is(err, errPIDNotVisible) {
		t.Fatalf("err = %v, want %v", err, errPIDNotVisible)
	}
}

func TestAttestNoticesExitReportedByPidfd(t *testing.T) {
	var a attestor
	_, err := a.attest(int32(os.Getpid()), 0, 0, func() bool { return true })
	var exited *ExitedError
	if !errors.As(err, &exited) {
		t.Fatalf("err = %v, want ExitedError", err)
	}
}

func TestHashCacheRehashesOnlyChangedFiles(t *testing.T) {
	c := newHashCache()
	name := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(name, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := c.sum(name)
	if err != nil {
		t.Fatal(err)
	}
	if first != fileSHA256(t, name) {
		t.Fatalf("sum = %s, want %s", first, fileSHA256(t, name))
	}
	if again, _ := c.sum(name); again != first || len(c.entries) != 1 {
		t.Fatalf("second sum = %s with %d entries, want cached %s", again, len(c.entries), first)
	}
	// Same size, and the mtime set back: ctime still tells the change.
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte("two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	changed, err := c.sum(name)
	if err != nil {
		t.Fatal(err)
	}
	if changed != fileSHA256(t, name) || changed == first {
		t.Errorf("after a rewrite: sum = %s, want %s", changed, fileSHA256(t, name))
	}
}

func TestReadStatusGroups(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, status string
		want         []uint32
		wantErr      error
	}{
		{"good-groups", "Name:\tx\nState:\tS (sleeping)\nGroups:\t4 24 27 \nNSpid:\t1\n", []uint32{4, 24, 27}, nil},
		{"good-no-groups", "State:\tR (running)\nGroups:\t\n", nil, nil},
		{"bad-zombie", "State:\tZ (zombie)\nGroups:\t4\n", nil, errZombie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(dir, tt.name)
			if err := os.WriteFile(name, []byte(tt.status), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readStatusGroups(name)
			if !errors.Is(err, tt.wantErr) || !slices.Equal(got, tt.want) {
				t.Errorf("readStatusGroups = %v, %v; want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

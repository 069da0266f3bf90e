package keystest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	localKMSOnce sync.Once
	localKMSBin  string
	localKMSErr  error
)

// LocalKMS starts local-kms (github.com/nsmithuk/local-kms, an AWS KMS
// emulator, built from the Go module proxy into the test's temporary
// directory) on a loopback port for the rest of the test, points the AWS
// SDK at fixed test credentials (and never at an instance's metadata), and
// returns its endpoint URL. Building needs the go command and the module
// proxy, which CI has.
func LocalKMS(t testing.TB) string {
	t.Helper()
	localKMSOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "..", "testdata", "localkms")
		dir, err := os.MkdirTemp("", "meshpki-localkms-")
		if err != nil {
			localKMSErr = err
			return
		}
		localKMSBin = filepath.Join(dir, "localkms")
		cmd := exec.Command("go", "build", "-o", localKMSBin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			localKMSErr = &buildError{err: err, out: string(out)}
		}
	})
	if localKMSErr != nil {
		t.Fatalf("build local-kms: %v", localKMSErr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, localKMSBin, "-data", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "meshpki-test", "AWS_SECRET_ACCESS_KEY": "meshpki-test-secret",
			"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull} {
			t.Setenv(k, v)
		}
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("local-kms did not start in 30s")
	}
	return ""
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

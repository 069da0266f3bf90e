package hooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/manifest"
)

// Hooks run in order; a signal reaches the process its PID file names, an
// HTTP hook is called, a failing command is reported and the next still
// runs, a hanging one is killed at its timeout (its children with it),
// and onFailure: stop skips the rest.
func TestRun(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			calls.Add(1)
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	// A process to signal: it exits on SIGHUP.
	target := exec.Command("/bin/sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- target.Wait() }()
	defer target.Process.Kill()
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(target.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "child-alive")

	results := Run(context.Background(), []manifest.Hook{
		{Name: "reload", Signal: &manifest.SignalHook{PIDFile: pidFile, Signal: "HUP"}, Timeout: "5s", OnFailure: "continue"},
		{HTTP: &manifest.HTTPHook{URL: srv.URL + "/reload", Method: "POST"}, Timeout: "5s", OnFailure: "continue"},
		{Name: "fails", Command: []string{"/bin/sh", "-c", "echo broken; exit 3"}, Timeout: "5s", OnFailure: "continue"},
		{Name: "hangs", Command: []string{"/bin/sh", "-c", "(sleep 3; touch " + marker + ") & sleep 30"}, Timeout: "300ms", OnFailure: "stop"},
		{Name: "skipped", HTTP: &manifest.HTTPHook{URL: srv.URL + "/reload", Method: "POST"}, Timeout: "5s", OnFailure: "continue"},
	})
	if len(results) != 5 {
		t.Fatalf("%d results", len(results))
	}
	if results[0].Err != nil {
		t.Errorf("signal: %v", results[0].Err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the signalled process is still running")
	}
	if results[1].Err != nil || calls.Load() != 1 {
		t.Errorf("http: %v, %d calls", results[1].Err, calls.Load())
	}
	if results[2].Err == nil || !strings.Contains(results[2].Output, "broken") {
		t.Errorf("a failing command: %v %q", results[2].Err, results[2].Output)
	}
	if r := results[3]; r.Err == nil || !strings.Contains(r.Err.Error(), "did not finish within 300ms") || r.Duration > 3*time.Second {
		t.Errorf("a hanging command: %v after %s", r.Err, r.Duration)
	}
	if !results[4].Skipped || calls.Load() != 1 {
		t.Errorf("after a stop: %+v, %d calls", results[4], calls.Load())
	}
	time.Sleep(3500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the hanging hook's child outlived its timeout")
	}

	for name, h := range map[string]manifest.Hook{
		"no pid file":     {Signal: &manifest.SignalHook{PIDFile: filepath.Join(t.TempDir(), "none.pid"), Signal: "HUP"}},
		"http 500":        {HTTP: &manifest.HTTPHook{URL: srv.URL + "/fail", Method: "POST"}},
		"no such program": {Command: []string{"/nonexistent/reload"}},
	} {
		h.Timeout = "5s"
		if r := Run(context.Background(), []manifest.Hook{h}); r[0].Err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

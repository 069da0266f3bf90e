package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageBuildsAndRuns builds the Dockerfile's image with buildah (this
// machine kind has no Docker engine; buildah reads the same Dockerfile and
// pulls nothing for FROM scratch), checks its configuration — a non-root
// user, /meshpki as the entry point — and runs 'meshpki --version' and
// 'meshpki ca --help' in it.
func TestImageBuildsAndRuns(t *testing.T) {
	buildah, err := exec.LookPath("buildah")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("buildah is not installed (apt-get install buildah)")
		}
		t.Skip("buildah is not installed (apt-get install buildah)")
	}
	if out, err := exec.Command("sh", "image/prepare.sh").CombinedOutput(); err != nil {
		t.Fatalf("prepare.sh: %v\n%s", err, out)
	}
	store := t.TempDir()
	bh := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(buildah, append([]string{"--storage-driver", "vfs", "--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run")}, args...)...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		exec.Command(buildah, "--storage-driver", "vfs", "--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "rm", "--all").Run()
	})
	bh("bud", "--isolation", "chroot", "--pull-never", "-t", "meshpki:test", ".")
	raw := bh("inspect", "--type", "image", "meshpki:test")
	var one struct {
		OCIv1 struct {
			Config struct {
				User       string   `json:"User"`
				Entrypoint []string `json:"Entrypoint"`
			} `json:"config"`
		} `json:"OCIv1"`
	}
	if err := json.Unmarshal([]byte(raw), &one); err != nil {
		t.Fatalf("inspect: %v\n%.400s", err, raw)
	}
	if one.OCIv1.Config.User != "65532:65532" || len(one.OCIv1.Config.Entrypoint) != 1 || one.OCIv1.Config.Entrypoint[0] != "/meshpki" {
		t.Errorf("image config: user %q, entrypoint %v", one.OCIv1.Config.User, one.OCIv1.Config.Entrypoint)
	}
	ctr := strings.TrimSpace(bh("from", "--pull-never", "meshpki:test"))
	if out := bh("run", "--isolation", "chroot", ctr, "--", "/meshpki", "--version"); !strings.HasPrefix(out, "meshpki ") {
		t.Errorf("meshpki --version in the image: %q", out)
	}
	if out := bh("run", "--isolation", "chroot", ctr, "--", "/meshpki", "ca", "--help"); !strings.Contains(out, "Usage:") {
		t.Errorf("meshpki ca --help in the image: %q", out)
	}
}

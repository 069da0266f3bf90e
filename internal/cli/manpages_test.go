package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestManPagesAndCompletion: 'meshpki manpages' writes a page for every
// command of the tree, each of which groff renders without a warning (as
// man does, UTF-8 in), and the bash completion script parses.
func TestManPagesAndCompletion(t *testing.T) {
	dir := t.TempDir()
	out, _ := mustRun(t, "manpages", "--dir", dir)
	if !strings.HasPrefix(out, "wrote ") {
		t.Fatalf("manpages: %s", out)
	}
	var walk func(c *cobra.Command)
	count := 0
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.Name() != "meshpki" {
			return
		}
		count++
		page := filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		data, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("no man page for %q: %v", c.CommandPath(), err)
			return
		}
		if !strings.Contains(string(data), ".TH \"MESHPKI\" \"1\"") || !strings.Contains(string(data), c.Short) {
			t.Errorf("%s lacks its header or summary", page)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(nil, nil, nil))
	if count < 50 {
		t.Fatalf("only %d commands walked", count)
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("groff is not installed (apt-get install groff-base)")
		}
		t.Skip("groff is not installed")
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	for _, p := range pages {
		if out, err := exec.Command(groff, "-k", "-man", "-Tutf8", "-ww", "-z", p).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v %s", filepath.Base(p), err, out)
		}
	}
	script, _ := mustRun(t, "completion", "bash")
	f := filepath.Join(dir, "meshpki.bash")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
		t.Errorf("bash -n on the completion script: %v %s", err, out)
	}
	for _, shell := range []string{"zsh", "fish", "powershell"} {
		if script, _ := mustRun(t, "completion", shell); len(script) < 500 {
			t.Errorf("completion %s: %d bytes", shell, len(script))
		}
	}
}

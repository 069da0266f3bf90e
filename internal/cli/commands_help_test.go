package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// clientCommandGroups are the groups whose help must carry a long text and
// an example.
var clientCommandGroups = map[string]bool{"token": true, "provisioner": true, "policy": true, "cert": true, "acme": true, "entry": true, "agent": true}

func TestEveryCommandHelpExitsZero(t *testing.T) {
	root := newRootCommand(nil, &strings.Builder{}, &strings.Builder{})
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			subPath := append(append([]string(nil), path...), sub.Name())
			t.Run(strings.Join(subPath, " "), func(t *testing.T) {
				code, out, errOut := invokeCLI(t, "", append(append([]string(nil), subPath...), "--help")...)
				if code != 0 || errOut != "" {
					t.Fatalf("--help: exit %d, stderr %q", code, errOut)
				}
				if !strings.Contains(out, "Usage:") {
					t.Errorf("--help printed no usage:\n%s", out)
				}
				if !clientCommandGroups[subPath[0]] {
					return
				}
				if sub.Short == "" || sub.Long == "" || sub.Example == "" {
					t.Errorf("want Short, Long and Example; got %q, %d bytes, %d bytes", sub.Short, len(sub.Long), len(sub.Example))
				}
				if !strings.Contains(out, "Examples:") {
					t.Errorf("--help shows no example:\n%s", out)
				}
			})
			walk(sub, subPath)
		}
	}
	walk(root, nil)
}

func TestBareGroupPrintsHelp(t *testing.T) {
	for group := range clientCommandGroups {
		code, out, errOut := invokeCLI(t, "", group)
		if code != 0 || errOut != "" || !strings.Contains(out, "Available Commands:") {
			t.Errorf("%s: exit %d, stderr %q, stdout:\n%s", group, code, errOut, out)
		}
	}
}

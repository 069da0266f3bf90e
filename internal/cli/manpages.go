package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/meshpki/meshpki/internal/buildinfo"
)

func init() { register(newManPagesCommand) }

func newManPagesCommand(s *streams) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "manpages --dir DIR",
		Short: "Write a man page (section 1) for every command to DIR",
		Long: `Write a man page for meshpki and each of its commands to DIR, generated
from the same tree as --help (meshpki.1, meshpki-server.1, meshpki-admin-add.1,
…). Install them with: meshpki manpages --dir /usr/local/share/man/man1 && mandb.
Shell completion comes from 'meshpki completion bash|zsh|fish|powershell'.`,
		Example: `  meshpki manpages --dir ./man && man -l ./man/meshpki-agent.1
  meshpki completion bash > /etc/bash_completion.d/meshpki`,
		Args: positionalArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--dir is required")}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			header := &doc.GenManHeader{Title: "MESHPKI", Section: "1", Source: "meshpki " + buildinfo.Get().Version, Manual: "meshpki manual"}
			root := c.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			entries, _ := os.ReadDir(dir)
			_, err := fmt.Fprintf(s.out, "wrote %d man pages to %s\n", len(entries), dir)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "`DIR` to write the pages to (made if missing)")
	return cmd
}

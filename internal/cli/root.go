// Package cli owns the meshpki command line: one file per command group, each
// a thin layer that parses flags, calls the domain packages or the CA's API,
// and prints human output (or JSON with --json). Errors become one line on
// stderr and a non-zero exit code.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/buildinfo"
)

// Exit codes, the same for every command (docs/CLI.md):
//
//	0 ok; 1 error (the command could not do its job); 2 usage (bad flags or
//	arguments); 3 checked, and not OK (a policy deny, a tampered audit log,
//	an expired or unverified certificate): the command worked, and its
//	answer is "no".
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitChecked = 3
)

// usageError marks errors caused by how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCodeError makes Main exit with code; err, if not nil, is printed first.
// Commands whose outcome is an answer rather than a failure (policy check's
// deny) return it with a nil err.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}
func (e exitCodeError) Unwrap() error { return e.err }

// Main runs the meshpki command line with args and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		if ec.err != nil {
			fmt.Fprintf(stderr, "meshpki: %s\n", ec.err)
		}
		return ec.code
	}
	fmt.Fprintf(stderr, "meshpki: %s\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// io holds the streams a command reads and writes, so tests can capture them.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	s := &streams{in: stdin, out: stdout, err: stderr}
	root := &cobra.Command{
		Use:           "meshpki",
		Short:         "A private PKI for microservices in one binary: the CA server and its admin and client CLI",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().String(),
	}
	root.SetVersionTemplate("meshpki {{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	for _, add := range commandGroups {
		root.AddCommand(add(s))
	}
	return root
}

// commandGroups lists the constructors of the top-level commands. Each file
// that defines a command group registers it in an init function, so command
// files do not have to edit this one.
var commandGroups []func(*streams) *cobra.Command

func register(f func(*streams) *cobra.Command) { commandGroups = append(commandGroups, f) }

// newLogger is the logger of a long-running command: text (logfmt-like,
// for people) or json (one object per line, for log shippers), at level.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", format)}
}

func init() { register(newVersionCommand) }

func newVersionCommand(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "version [--json]",
		Short:   "Print the version, commit and Go version of this binary",
		Example: "  meshpki version\n  meshpki --version\n  meshpki version --json | jq -r .commit",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if asJSON {
				return writeJSON(s.out, buildinfo.Get())
			}
			_, err := fmt.Fprintf(s.out, "meshpki %s\n", buildinfo.Get())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print version, commit, go and platform as JSON")
	return cmd
}

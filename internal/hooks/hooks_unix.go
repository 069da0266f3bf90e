//go:build unix

package hooks

import (
	"fmt"
	"os/exec"
	"syscall"
)

var signals = map[string]syscall.Signal{"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM}

func sendSignal(pid int, name string) error {
	sig, ok := signals[name]
	if !ok {
		return fmt.Errorf("signal %q is not HUP, USR1, USR2 or TERM", name)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s to process %d: %w", name, pid, err)
	}
	return nil
}

// killGroup runs the command in a process group of its own, and kills the
// whole group when its context ends, so a hook's children do not outlive
// its timeout.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

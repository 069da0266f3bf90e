//go:build !unix

package hooks

import (
	"errors"
	"os/exec"
)

func sendSignal(int, string) error {
	return errors.New("signal hooks need a Unix system: use a command or http hook")
}

func killGroup(*exec.Cmd) {}

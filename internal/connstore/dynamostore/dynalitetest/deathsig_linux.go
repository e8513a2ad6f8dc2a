package dynalitetest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills dynalite if the test binary dies without running its
// cleanups (a -timeout panic, a kill), so no server outlives the test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

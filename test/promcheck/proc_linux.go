package promcheck

import "syscall"

// sysProcAttr puts Prometheus in a process group of its own, so stop can
// signal the whole group, and has the kernel kill it if the test binary
// dies first (a panic, `go test -timeout`), so it never outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

//go:build unix && !linux

package promcheck

import "syscall"

// sysProcAttr puts Prometheus in a process group of its own, so stop can
// signal the whole group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

package main

import "syscall"

// sysProcAttr puts a service in a process group of its own, and has the
// kernel send it SIGTERM should dev die without stopping it (SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

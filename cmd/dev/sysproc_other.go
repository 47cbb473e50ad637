//go:build !unix

package main

import "syscall"

// sysProcAttr: no process groups here; Ctrl-C reaches the services too.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

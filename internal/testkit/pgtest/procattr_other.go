//go:build !linux

package pgtest

import "syscall"

// dieWithParent has no parent-death signal to set outside Linux: a test
// binary that dies without running its cleanups leaves its servers
// running there.
func dieWithParent(*syscall.SysProcAttr) {}

package pgtest

import "syscall"

// dieWithParent makes the kernel send the postmaster SIGQUIT (immediate
// shutdown, which takes its processes along) when the test process dies
// without running its cleanups: a test binary killed by go test's timeout
// must not leave servers running.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGQUIT }

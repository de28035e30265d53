//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import (
	"errors"
	"os"
)

// disableEcho is not available on this platform: pipe the password in
// instead (`popbridge hash-password < file`).
func disableEcho(*os.File) (func(), error) {
	return nil, errors.New("not supported on this platform; pipe the password on stdin instead")
}

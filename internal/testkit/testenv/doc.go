// Package testenv holds small helpers that tests of several packages need
// from the machine they run on: a free loopback port ([FreePort]) and, on
// Linux, a small file system to fill ([SmallDisk]). It is a test kit:
// production code never imports it.
package testenv

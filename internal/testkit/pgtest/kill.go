package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Running reports whether the postmaster is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop shuts the server down cleanly (fast mode: open sessions are
// disconnected, their transactions rolled back). It does nothing when the
// server is not running. Restart starts it again.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("pgtest: stop: %v", err)
	}
}

// stop sends SIGINT (fast shutdown) to the postmaster and waits for it to
// exit, killing everything after 30 s.
func (s *Server) stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || !s.Running() {
		return nil
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
		// The postmaster exits only after all its processes have.
		return nil
	case <-time.After(30 * time.Second):
		if err := s.killAll(cmd.Process.Pid, done); err != nil {
			return fmt.Errorf("no clean shutdown in 30 s, and kill: %w", err)
		}
		return errors.New("no clean shutdown in 30 s; killed")
	}
}

// Kill kills the postmaster and every process of the server with SIGKILL at
// once, as if the machine had died, and waits until they are gone; the
// server's System V shared memory segment goes too, as at a reboot. Data
// committed before stays on disk; Restart runs crash recovery. The test
// fails if the server is not running.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if !s.Running() {
		tb.Fatalf("pgtest: kill: the server is not running")
	}
	if err := s.killAll(cmd.Process.Pid, done); err != nil {
		tb.Fatalf("pgtest: kill: %v", err)
	}
}

// Restart starts the server again on the same port, data and settings,
// after stopping it cleanly if it is running, and waits until it accepts
// connections (after crash recovery, following a Kill). The test fails if
// it does not come back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
	if err := s.startPostmaster(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// killAll stops the postmaster (so that it forks no more), kills its
// children and then it, waits for all of them, and removes the shared
// memory segment named in postmaster.pid. Killing the postmaster alone
// would leave its backends running for a while, attached to the segment,
// and a new postmaster refuses to start while they are.
func (s *Server) killAll(pid int, done <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stop postmaster %d: %w", pid, err)
	}
	for procState(pid) != 'T' {
		if time.Now().After(deadline) {
			return fmt.Errorf("postmaster %d did not stop", pid)
		}
		time.Sleep(time.Millisecond)
	}
	children, err := childrenOf(pid)
	if err != nil {
		return err
	}
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("postmaster %d still running after SIGKILL", pid)
	}
	for _, c := range children {
		// Orphaned children are reparented; a parent that never reaps
		// leaves a zombie, which has let go of everything already.
		for st := procState(c); st != 0 && st != 'Z' && st != 'X'; st = procState(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("server process %d still running after SIGKILL", c)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return s.removeShm()
}

// procState returns the state letter of process pid from /proc (R, S, T,
// Z, ...), or 0 when there is no such process.
func procState(pid int) byte {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:])) // state, ppid, ...
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// removeShm removes the System V shared memory segment whose id line 7 of
// postmaster.pid gives ("key id"), if it still exists.
func (s *Server) removeShm() error {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return nil // never written: nothing allocated
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return nil
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return nil
	}
	id, err := strconv.Atoi(f[1])
	if err != nil {
		return nil
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EIDRM) {
		return fmt.Errorf("remove shared memory segment %d: %w", id, err)
	}
	return nil
}

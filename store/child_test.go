package store

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childProcess is this test binary re-executed to run one Test…Child
// function in another process (a second popbridge holding or writing the
// same data directory). It talks over the child's stdin and stdout.
type childProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

// startChild starts the test function name in a child process with the
// environment variable env set to value. The child is killed and reaped
// when the test ends, unless the test has already waited for it.
func startChild(t *testing.T, name, env, value string) *childProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childProcess{t: t, cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return c
}

// expect reads the child's output until the line want, failing on an
// "ERROR" line or the end of the output.
func (c *childProcess) expect(want string) {
	c.t.Helper()
	for c.lines.Scan() {
		if l := c.lines.Text(); strings.HasPrefix(l, "ERROR") {
			c.t.Fatalf("child: %s", l)
		} else if l == want {
			return
		}
	}
	c.t.Fatalf("child ended before printing %s: %v", want, c.lines.Err())
}

// next requires the child's next line to be want.
func (c *childProcess) next(want string) {
	c.t.Helper()
	if !c.lines.Scan() {
		c.t.Fatalf("child ended before printing %s: %v", want, c.lines.Err())
	}
	if l := c.lines.Text(); l != want {
		c.t.Fatalf("child said %q, want %q", l, want)
	}
}

// send writes one line to the child's stdin.
func (c *childProcess) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

// kill ends the child with SIGKILL and reaps it.
func (c *childProcess) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd.Wait()
}

// pid is the child's process id.
func (c *childProcess) pid() int { return c.cmd.Process.Pid }

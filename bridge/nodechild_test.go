// The node in a child process: a serve that a test can kill -9, or whose
// CPU and memory a load test measures apart from its own clients.

package bridge

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
)

// nodeChildEnv names the config file a re-executed test binary serves
// (TestNodeChild): a node that a test can kill -9, or whose CPU and memory
// a load test measures apart from its own clients.
const nodeChildEnv = "POPBRIDGE_NODE_CHILD_CONFIG"

// nodeProfileEnv names the file a child node writes its CPU profile to
// between SIGUSR1 and SIGUSR2 (TestProviderLoad's -provider.cpuprofile).
const nodeProfileEnv = "POPBRIDGE_NODE_CHILD_CPUPROFILE"

// TestNodeChild is popbridge serve in a child process of a test: it runs
// only there, until its stdin closes or it is killed.
func TestNodeChild(t *testing.T) {
	path := os.Getenv(nodeChildEnv)
	if path == "" {
		t.Skip("the child of a multi-node or load test")
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pf := os.Getenv(nodeProfileEnv); pf != "" {
		// SIGUSR1 starts the CPU profile and SIGUSR2 ends it, so that a
		// load test profiles the window it measures and nothing else.
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			var f *os.File
			for sig := range sigs {
				switch {
				case sig == syscall.SIGUSR1 && f == nil:
					var err error
					if f, err = os.Create(pf); err != nil {
						t.Errorf("cpu profile: %v", err)
						continue
					}
					if err := pprof.StartCPUProfile(f); err != nil {
						t.Errorf("cpu profile: %v", err)
					}
				case sig == syscall.SIGUSR2 && f != nil:
					pprof.StopCPUProfile()
					f.Close()
					f = nil
				}
			}
		}()
	}
	b := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := b.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// startChildNode starts a node serving cfgText in a child process; kill
// ends it with SIGKILL.
func startChildNode(t *testing.T, cfgText string) (kill func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestNodeChild$")
	child.Env = append(os.Environ(), nodeChildEnv+"="+path)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			child.Process.Kill()
			child.Wait()
			stdin.Close()
		})
	}
	t.Cleanup(kill)
	return kill
}

package testenv

import "os"

// ServerDir makes a directory for a test server's files (configuration,
// data, UNIX sockets): under the system's temporary directory rather than
// t.TempDir, because a UNIX socket path must stay short, and mode 0755, so
// that the server's unprivileged processes can traverse it. The caller
// removes it (os.RemoveAll) when the server is gone or failed to start.
func ServerDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

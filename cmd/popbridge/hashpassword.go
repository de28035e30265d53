package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) hashPassword(ctx context.Context, args []string) int {
	f := a.newFlags("hash-password", "[-algo argon2id|bcrypt] [-stdin]", "Read a password (twice, without echo, on a terminal) and print its hash for password_hash")
	algo := f.String("algo", "argon2id", "hash `algorithm`: argon2id or bcrypt")
	useBcrypt := f.Bool("bcrypt", false, "same as -algo bcrypt")
	stdin := f.Bool("stdin", false, "read the password from the first line of stdin without prompting, also on a terminal (for scripts)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if *useBcrypt {
		*algo = "bcrypt"
	}
	if *algo != "argon2id" && *algo != "bcrypt" {
		fmt.Fprintf(a.stderr, "popbridge hash-password: -algo %q is not one of argon2id, bcrypt\n", *algo)
		return exitUsage
	}
	pw, err := a.readPassword(ctx, *stdin)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge hash-password: %v\n", err)
		return exitFailure
	}
	if *algo == bridge.HashBcrypt && len(pw) > bridge.BcryptMaxPassword {
		fmt.Fprintf(a.stderr, "popbridge hash-password: the password is %d bytes; bcrypt uses only the first %d, so it is refused: use argon2id (the default)\n", len(pw), bridge.BcryptMaxPassword)
		return exitFailure
	}
	h, err := bridge.HashPassword(pw, *algo)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge hash-password: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(a.stdout, h)
	return exitOK
}

// readPassword reads one password. On a terminal (unless fromStdin) it
// prompts on stderr, turns echo off, refuses an empty password at once and
// asks again to confirm; otherwise it reads the first line.
func (a *app) readPassword(ctx context.Context, fromStdin bool) (string, error) {
	f, tty := a.stdin.(*os.File)
	if !fromStdin && tty && isTerminal(f) {
		first, err := promptNoEcho(ctx, f, a.stderr, "Password: ")
		if err != nil {
			return "", err
		}
		if _, err := checkPassword(first); err != nil {
			return "", err
		}
		again, err := promptNoEcho(ctx, f, a.stderr, "Again: ")
		if err != nil {
			return "", err
		}
		if first != again {
			return "", errors.New("the passwords differ")
		}
		return first, nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("empty password: an IMAP password must not be empty")
	}
	return pw, nil
}

// promptNoEcho prints prompt and reads a line from the terminal f with echo
// turned off, restored afterwards, also on error or when ctx is cancelled
// (Ctrl-C). After a cancellation the reading goroutine stays blocked on the
// terminal until the process exits, which follows immediately.
func promptNoEcho(ctx context.Context, f *os.File, out io.Writer, prompt string) (string, error) {
	fmt.Fprint(out, prompt)
	restore, err := disableEcho(f)
	if err != nil {
		return "", fmt.Errorf("turn off terminal echo: %w", err)
	}
	defer fmt.Fprintln(out)
	defer restore()
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readLine(f)
		done <- result{line, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return "", fmt.Errorf("read password: %w", r.err)
		}
		return r.line, nil
	case <-ctx.Done():
		return "", fmt.Errorf("read password: %w", ctx.Err())
	}
}

// readLine reads bytes up to a newline without buffering past it, so the
// second prompt reads what follows.
func readLine(r io.Reader) (string, error) {
	var b []byte
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimRight(string(b), "\r"), nil
			}
			b = append(b, buf[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return string(b), nil
			}
			return "", err
		}
	}
}

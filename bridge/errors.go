package bridge

import (
	"errors"
	"strconv"
	"strings"
)

// Kinds of configuration problem; a *ConfigError matches one of them with
// errors.Is.
var (
	// ErrSyntax: the file is not valid TOML, or a value has the wrong TOML type.
	ErrSyntax = errors.New("bridge: config: syntax error")
	// ErrUnknownKey: a key popbridge does not know (often a typo).
	ErrUnknownKey = errors.New("bridge: config: unknown key")
	// ErrMissing: a required setting is absent.
	ErrMissing = errors.New("bridge: config: missing setting")
	// ErrInvalidValue: a setting has a value outside what is valid.
	ErrInvalidValue = errors.New("bridge: config: invalid value")
	// ErrDuplicate: two users or accounts share a name.
	ErrDuplicate = errors.New("bridge: config: duplicate name")
	// ErrConflict: settings that cannot be used together.
	ErrConflict = errors.New("bridge: config: conflicting settings")
)

// ConfigError is one problem in a configuration. Its text names the file,
// the line where known, the section and field, and what would be valid:
//
//	config.toml:14: account "work": tls: "ssl" is not one of implicit, starttls, none
//
// [Config.Validate] and [Parse] return several of them joined with
// errors.Join.
type ConfigError struct {
	File    string // "" when the configuration was built in code
	Line    int    // 1-based; 0 when unknown
	Section string // `account "work"`, `user "alice"`, "imap", "http", or "" for top level
	Field   string // the key, e.g. "tls"; "" when the problem is not one key's
	Kind    error  // ErrSyntax, ErrUnknownKey, ErrMissing, ErrInvalidValue, ErrDuplicate or ErrConflict
	Err     error  // what is wrong, for humans
}

// Error formats file:line: section: field: message, leaving out what is unknown.
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Section != "" {
		b.WriteString(e.Section + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the kind and the cause.
func (e *ConfigError) Unwrap() []error { return []error{e.Kind, e.Err} }

// ConfigErrors returns the *ConfigError values in err (as returned by
// Parse, Validate or Load), in order.
func ConfigErrors(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		var ce *ConfigError
		if errors.As(err, &ce) && ce == err {
			out = append(out, ce)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if u := errors.Unwrap(err); u != nil {
			walk(u)
		}
	}
	walk(err)
	return out
}

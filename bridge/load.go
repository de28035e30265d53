package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Load reads, parses and validates the configuration file at path. All
// problems are reported together (errors.Join of *ConfigError). When the
// file holds plain `password` values and can be read by group or others, a
// warning is logged on logger (nil: none).
func Load(path string, logger *slog.Logger) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f, path)
	if err != nil && (c == nil || errors.Is(err, ErrSyntax)) {
		return nil, err
	}
	// Unknown keys and invalid values are reported together.
	if err := errors.Join(err, c.Validate()); err != nil {
		return nil, err
	}
	if logger != nil {
		warnPlainPasswords(c, f, logger)
		warnShortPollIntervals(c, logger)
	}
	return c, nil
}

// ShortPollInterval is the poll_interval below which Load warns: many
// providers limit how often an account may log in over POP3 and lock out
// (or throttle) one that polls faster.
const ShortPollInterval = time.Minute

// warnShortPollIntervals logs every account polling more often than once a
// minute, with the file and line of its poll_interval.
func warnShortPollIntervals(c *Config, logger *slog.Logger) {
	for i, a := range c.Accounts {
		if a.PollInterval.Value >= ShortPollInterval {
			continue
		}
		where := c.File
		if line := c.pos.line("account[" + strconv.Itoa(i) + "].poll_interval"); line > 0 {
			where += ":" + strconv.Itoa(line)
		}
		logger.Warn("poll_interval is under a minute: providers may throttle or lock an account that logs in this often; "+
			"use \"5m\" or more (new mail can still be fetched at once with SIGUSR1)",
			"account", a.Name, "poll_interval", a.PollInterval.Value.String(), "at", where)
	}
}

// warnPlainPasswords logs when passwords sit in a file others can read.
func warnPlainPasswords(c *Config, f *os.File, logger *slog.Logger) {
	var names []string
	for _, a := range c.Accounts {
		if !a.Password.IsZero() {
			names = append(names, a.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return
	}
	logger.Warn("config file holds plain passwords and is readable by group or others; chmod 600 it or use password_file/password_command",
		"file", c.File, "mode", fi.Mode().Perm().String(), "accounts", strings.Join(names, ","))
}

// rawConfig is the top level of the file; tables of several kinds are
// decoded one by one so that an error names the right entry.
type rawConfig struct {
	DataDir  string           `toml:"data_dir"`
	Store    toml.Primitive   `toml:"store"`
	IMAP     toml.Primitive   `toml:"imap"`
	HTTP     toml.Primitive   `toml:"http"`
	Poller   toml.Primitive   `toml:"poller"`
	Users    []toml.Primitive `toml:"user"`
	Accounts []toml.Primitive `toml:"account"`
	Provider toml.Primitive   `toml:"provider"`
}

// Parse reads a TOML configuration from r, starting from [DefaultConfig]
// and applying per-account defaults. filename names the file in error
// messages and anchors relative paths. It refuses unknown keys and reports
// syntax and type errors with file and line; several problems are reported
// together. Parse does not validate values: call [Config.Validate].
//
// The returned Config is nil only when the file is not valid TOML; with
// type or unknown-key errors it holds what could be decoded.
func Parse(r io.Reader, filename string) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := DefaultConfig()
	c.File = filename
	raw := rawConfig{DataDir: c.DataDir}
	c.pos = scanPositions(string(data))
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		return nil, syntaxError(filename, err, c.pos, "", "")
	}
	c.DataDir = raw.DataDir

	var errs []error
	failed := map[string]bool{} // top + "#" + index of tables that did not decode
	// nameOf decodes just the name of an entry, so that an error in
	// another field can name the entry whatever order toml decodes in.
	nameOf := func(prim toml.Primitive) string {
		var n struct {
			Name string `toml:"name"`
		}
		md.PrimitiveDecode(prim, &n)
		return n.Name
	}
	decode := func(prim toml.Primitive, v any, top string, index int, section func() string) {
		if err := md.PrimitiveDecode(prim, v); err != nil {
			prefix := top
			if index >= 0 {
				prefix += "[" + strconv.Itoa(index) + "]"
			}
			errs = append(errs, syntaxError(filename, err, c.pos, prefix, section()))
			failed[top+"#"+strconv.Itoa(index)] = true
		}
	}
	if md.IsDefined("store") {
		decode(raw.Store, &c.Store, "store", -1, func() string { return "store" })
	}
	if md.IsDefined("imap") {
		decode(raw.IMAP, &c.IMAP, "imap", -1, func() string { return "imap" })
	}
	if md.IsDefined("http") {
		decode(raw.HTTP, &c.HTTP, "http", -1, func() string { return "http" })
	}
	if md.IsDefined("poller") {
		decode(raw.Poller, &c.Poller, "poller", -1, func() string { return "poller" })
	}
	if md.IsDefined("provider") {
		c.Provider.Port = 0
		decode(raw.Provider, &c.Provider, "provider", -1, func() string { return "provider" })
	}
	if c.Provider.Port == 0 {
		c.Provider.Port = DefaultPort(c.Provider.TLS)
	}
	for i, p := range raw.Users {
		var u UserConfig
		name := nameOf(p)
		decode(p, &u, "user", i, func() string { return sectionName("user", i, name) })
		c.Users = append(c.Users, u)
	}
	for i, p := range raw.Accounts {
		a := DefaultAccount()
		a.Port = 0
		name := nameOf(p)
		decode(p, &a, "account", i, func() string { return sectionName("account", i, name) })
		if a.Port == 0 {
			a.Port = DefaultPort(a.TLS)
		}
		c.Accounts = append(c.Accounts, a)
	}
	errs = append(errs, c.unknownKeys(md, failed)...)
	return c, errors.Join(errs...)
}

// sectionName names a [[user]] or [[account]] entry: by name, or by its
// 1-based position when it has none.
func sectionName(kind string, index int, name string) string {
	if name != "" {
		return kind + " " + strconv.Quote(name)
	}
	return kind + " #" + strconv.Itoa(index+1)
}

// section names the table a key belongs to.
func (c *Config) section(top string, index int) string {
	switch {
	case top == "user" && index >= 0 && index < len(c.Users):
		return sectionName("user", index, c.Users[index].Name)
	case top == "account" && index >= 0 && index < len(c.Accounts):
		return sectionName("account", index, c.Accounts[index].Name)
	case top == "store" || top == "imap" || top == "http" || top == "poller" || top == "provider":
		return top
	}
	return ""
}

// unknownKeys reports every key no field took, with its line and the keys
// that are valid at that place.
func (c *Config) unknownKeys(md toml.MetaData, failed map[string]bool) []error {
	undecoded := md.Undecoded()
	if len(undecoded) == 0 {
		return nil
	}
	keys := md.Keys()
	located := c.pos.locate(keys)
	var errs []error
	reported := map[string]bool{} // indexed paths already reported
	u := 0
	for i, k := range keys {
		if u >= len(undecoded) {
			break
		}
		if k.String() != undecoded[u].String() {
			continue
		}
		u++
		kp := located[i]
		if failed[k[0]+"#"+strconv.Itoa(kp.index)] {
			continue
		}
		// Report "x" once, not also "x.y" below it (inline tables, dotted keys).
		top := k[0]
		idx := kp.index
		var name []string
		var valid []string
		switch {
		case len(k) == 1:
			name = k
			valid = tomlKeys(reflect.TypeFor[rawConfig]())
		case top == "store":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[StoreConfig]())
		case top == "imap":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[IMAPConfig]())
		case top == "http":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[HTTPConfig]())
		case top == "poller":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[PollerConfig]())
		case top == "provider":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[ProviderConfig]())
		case top == "user":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[UserConfig]())
		case top == "account":
			name, valid = k[1:], tomlKeys(reflect.TypeFor[AccountConfig]())
		default:
			name = k
			valid = tomlKeys(reflect.TypeFor[rawConfig]())
		}
		id := top + "#" + strconv.Itoa(idx) + "#" + name[0]
		if reported[id] {
			continue
		}
		reported[id] = true
		section := ""
		if len(k) > 1 {
			section = c.section(top, idx)
		}
		errs = append(errs, &ConfigError{
			File: c.File, Line: kp.line, Section: section, Kind: ErrUnknownKey,
			Err: fmt.Errorf("unknown key %q (valid keys: %s)", toml.Key(name).String(), strings.Join(valid, ", ")),
		})
	}
	return errs
}

// tomlKeys lists the toml tags of a struct type, in field order.
func tomlKeys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, tag)
	}
	return slices.Clip(out)
}

// tomlErrPrefix matches the prefix BurntSushi/toml puts on type errors.
var tomlErrPrefix = regexp.MustCompile(`^toml: (?:line \d+ )?(?:\(last key "([^"]*)"\): )?`)

// syntaxError turns a toml decoding error into a *ConfigError. prefix is the
// indexed path of the table being decoded ("account[1]"), used to find the
// line of the offending key; section names that table.
func syntaxError(file string, err error, pos *positions, prefix, section string) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		// From the parser: its position is exact.
		msg := pe.Message
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s (after key %q)", msg, pe.LastKey)
		}
		return &ConfigError{File: file, Line: pe.Position.Line, Section: section, Kind: ErrSyntax, Err: errors.New("invalid TOML: " + msg)}
	}
	// A type mismatch: the message names the absolute last key
	// ("account.port"), whose line toml only knows for the last table of
	// an array; find it in the table being decoded.
	msg, lastKey := err.Error(), ""
	if m := tomlErrPrefix.FindStringSubmatch(msg); m != nil {
		lastKey, msg = m[1], msg[len(m[0]):]
	}
	// Go's "slice" means a TOML array to the reader of the file.
	msg = strings.Replace(msg, "destination has type slice", `destination has type array (write e.g. ["a", "b"])`, 1)
	ce := &ConfigError{File: file, Section: section, Kind: ErrSyntax, Err: errors.New(msg)}
	path := prefix
	if lastKey != "" {
		rel := strings.Split(lastKey, ".")
		if prefix != "" && len(rel) > 1 {
			rel = rel[1:]
		}
		ce.Field = strings.Join(rel, ".")
		if path != "" {
			path += "."
		}
		path += ce.Field
	}
	ce.Line = pos.line(path)
	return ce
}

package bridge

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/popbridge/popbridge/poller"
)

// Store backends of [store] backend.
const (
	// BackendSQLite is the embedded store in data_dir (the default).
	BackendSQLite = "sqlite"
	// BackendPostgres is the store on PostgreSQL, shared by any number of
	// popbridge nodes.
	BackendPostgres = "postgres"
)

// StoreConfig is the [store] table: where the mail store lives.
type StoreConfig struct {
	// Backend is "sqlite" (embedded in data_dir; the default when "") or
	// "postgres" (several nodes on one database; see docs/OPERATIONS.md,
	// "Several nodes").
	Backend string `toml:"backend"`
	// DSN is the PostgreSQL connection string (postgres:// URL or
	// key=value), for backend = "postgres". It may carry a password: it is
	// never logged.
	DSN string `toml:"dsn"`
	// DSNFile is a file holding the DSN instead (relative to the config
	// file); exactly one of DSN and DSNFile is set with postgres. The file
	// is read at start.
	DSNFile string `toml:"dsn_file"`
	// NodeName names this node among those sharing the database (leases,
	// logs); unique per node. Default: the host name.
	NodeName string `toml:"node_name"`
	// PollLease is how long a node's claim to poll an account lasts
	// without renewal (renewed every third of it): when a node dies,
	// another takes its accounts over within two of these. Used with
	// backend = "postgres". Default DefaultPollLease.
	PollLease Duration `toml:"poll_lease"`
}

// Bounds and default of [store] poll_lease.
const (
	DefaultPollLease = poller.DefaultLeaseTTL
	MinPollLease     = 3 * time.Second
	MaxPollLease     = 10 * time.Minute
)

// backend returns the configured backend, with the default filled in.
func (s StoreConfig) backend() string {
	if s.Backend == "" {
		return BackendSQLite
	}
	return s.Backend
}

// dsn returns the PostgreSQL DSN of cfg: dsn, or the trimmed content of
// dsn_file. Its error names the file, never the content.
func (c *Config) dsn() (string, error) {
	s := c.Store
	if s.DSNFile == "" {
		return s.DSN, nil
	}
	b, err := os.ReadFile(c.Path(s.DSNFile))
	if err != nil {
		return "", fmt.Errorf("store.dsn_file: %w", err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("store.dsn_file %s: the file is empty (write the PostgreSQL connection string in it)", c.Path(s.DSNFile))
	}
	return dsn, nil
}

func (v *validator) store() {
	s := v.c.Store
	switch s.backend() {
	case BackendSQLite:
		for _, f := range []struct{ key, val string }{{"dsn", s.DSN}, {"dsn_file", s.DSNFile}, {"node_name", s.NodeName}} {
			if f.val != "" {
				v.add("store."+f.key, "store", f.key, ErrConflict, "only with backend = \"postgres\" (the sqlite store lives in data_dir and serves one node)")
			}
		}
	case BackendPostgres:
		switch {
		case s.DSN == "" && s.DSNFile == "":
			v.add("store", "store", "dsn", ErrMissing, "backend = \"postgres\" needs dsn (e.g. \"postgres://popbridge@db.internal/popbridge?sslmode=verify-full\") or dsn_file")
		case s.DSN != "" && s.DSNFile != "":
			v.add("store.dsn_file", "store", "dsn_file", ErrConflict, "set exactly one of dsn and dsn_file")
		case s.DSNFile != "":
			if fi, err := os.Stat(v.c.Path(s.DSNFile)); err != nil {
				v.add("store.dsn_file", "store", "dsn_file", ErrInvalidValue, "%v", err)
			} else if fi.IsDir() {
				v.add("store.dsn_file", "store", "dsn_file", ErrInvalidValue, "%s is a directory, not a file holding the DSN", v.c.Path(s.DSNFile))
			}
		}
		if s.NodeName != "" && (strings.TrimSpace(s.NodeName) != s.NodeName || strings.ContainsFunc(s.NodeName, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) || len(s.NodeName) > 200) {
			v.add("store.node_name", "store", "node_name", ErrInvalidValue, "%q: a node name is up to 200 characters without spaces or control characters (default: the host name)", s.NodeName)
		}
	default:
		v.add("store.backend", "store", "backend", ErrInvalidValue, "%q is not a store backend (valid: \"sqlite\", \"postgres\")", s.Backend)
	}
	switch d := s.PollLease; {
	case d.err != nil:
		v.add("store.poll_lease", "store", "poll_lease", ErrInvalidValue, "%v", d.err)
	case d.Value < MinPollLease || d.Value > MaxPollLease:
		v.add("store.poll_lease", "store", "poll_lease", ErrInvalidValue, "%s is out of range (%s to %s; a dead node's accounts are taken over within two of these)", d.Value, MinPollLease, MaxPollLease)
	}
}

// storeRestartOnly lists every [store] key: the store is opened once, at
// start.
func storeRestartOnly() []restartKey {
	var out []restartKey
	t := reflect.TypeFor[StoreConfig]()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, restartKey{
			key: "store." + tag,
			changed: func(o, c *Config) bool {
				return reflect.ValueOf(o.Store).Field(i).Interface() != reflect.ValueOf(c.Store).Field(i).Interface()
			},
			keep: func(n, o *Config) {
				reflect.ValueOf(&n.Store).Elem().Field(i).Set(reflect.ValueOf(o.Store).Field(i))
			},
		})
	}
	return out
}

package bridge

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const storeBase = `data_dir = "d"
[imap]
listen = "127.0.0.1:0"
`

func TestStoreConfigErrors(t *testing.T) {
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte("postgres://u:secret@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, store string
		kind        error
		line        int
		want        string
	}{
		{"unknown backend", "[store]\nbackend = \"mysql\"\n", ErrInvalidValue, 5, `test.toml:5: store: backend: "mysql" is not a store backend (valid: "sqlite", "postgres")`},
		{"postgres without dsn", "[store]\nbackend = \"postgres\"\n", ErrMissing, 4, `test.toml:4: store: dsn: backend = "postgres" needs dsn`},
		{"both dsn", "[store]\nbackend = \"postgres\"\ndsn = \"postgres://db/x\"\ndsn_file = \"" + dsnFile + "\"\n", ErrConflict, 7, "store: dsn_file: set exactly one of dsn and dsn_file"},
		{"missing dsn file", "[store]\nbackend = \"postgres\"\ndsn_file = \"" + filepath.Join(dir, "nope") + "\"\n", ErrInvalidValue, 6, "no such file or directory"},
		{"dsn with sqlite", "[store]\ndsn = \"postgres://db/x\"\n", ErrConflict, 5, `store: dsn: only with backend = "postgres"`},
		{"bad node name", "[store]\nbackend = \"postgres\"\ndsn = \"postgres://db/x\"\nnode_name = \"a b\"\n", ErrInvalidValue, 7, `store: node_name: "a b": a node name is up to 200 characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(storeBase+tt.store), "test.toml")
			if err == nil {
				err = c.Validate()
			}
			ces := ConfigErrors(err)
			if len(ces) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(ces), err)
			}
			if !errors.Is(ces[0], tt.kind) || ces[0].Line != tt.line || !strings.Contains(ces[0].Error(), tt.want) {
				t.Errorf("got %q (line %d), want kind %v, line %d, containing %q", ces[0], ces[0].Line, tt.kind, tt.line, tt.want)
			}
		})
	}
}

func TestStoreConfigDSNFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte("  postgres://u:secret@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// dsn_file is relative to the config file.
	c, err := Parse(strings.NewReader(storeBase+"[store]\nbackend = \"postgres\"\ndsn_file = \"dsn\"\n"), filepath.Join(dir, "popbridge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dsn, err := c.dsn()
	if err != nil || dsn != "postgres://u:secret@db/x" {
		t.Fatalf("dsn = %q, %v", dsn, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.dsn(); err == nil || !strings.Contains(err.Error(), "empty") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("empty dsn_file: %v", err)
	}
	if c := parseValid(t, storeBase); c.Store.backend() != BackendSQLite {
		t.Fatalf("default backend %q", c.Store.backend())
	}
}

package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse, Validate or the position
// scanner panic, and that every error they return is a *ConfigError.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.toml")
	files = append(files, "../config.toml.example")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("a = \"\"\"\nx\\\n\"\"\"\n[[account]]\nname = 'x'\n")
	f.Fuzz(func(t *testing.T, src string) {
		scanPositions(src).line("account[0].name")
		c, err := Parse(strings.NewReader(src), "fuzz.toml")
		if err != nil && len(ConfigErrors(err)) == 0 {
			t.Fatalf("error without ConfigError: %v", err)
		}
		if c == nil {
			return
		}
		if err := c.Validate(); err != nil && len(ConfigErrors(err)) == 0 {
			t.Fatalf("validation error without ConfigError: %v", err)
		}
	})
}

package bridge

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph holds the package graph to the architecture (README,
// "Layout"): store knows none of our packages; poller and imapfront meet
// only in the store (never each other, never bridge); cmd/popbridge talks
// to bridge and the demo only; production code does not import a test kit
// (the demo application alone runs pop3mem, as its sample upstream).
// Only non-test imports count.
func TestImportGraph(t *testing.T) {
	const mod = "github.com/popbridge/popbridge/"
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{} // package → our packages it imports
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, mod)
		imports[name] = nil
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod) {
				imports[name] = append(imports[name], strings.TrimPrefix(imp, mod))
			}
		}
	}
	for _, must := range []string{"store", "poller", "imapfront", "bridge", "cmd/popbridge", "internal/demo", "internal/lib/pop3mem", "internal/testkit/pgtest", "internal/testkit/storetest"} {
		if _, ok := imports[must]; !ok {
			t.Fatalf("go list did not list %s", must)
		}
	}
	isTestKit := func(p string) bool { return strings.HasPrefix(p, "internal/testkit/") }
	forbid := func(pkg string, bad func(imp string) bool, why string) {
		t.Helper()
		for _, imp := range imports[pkg] {
			if bad(imp) {
				t.Errorf("%s imports %s: %s", pkg, imp, why)
			}
		}
	}
	forbid("store", func(string) bool { return true }, "the store imports none of our packages")
	for _, p := range []string{"poller", "imapfront"} {
		forbid(p, func(imp string) bool { return imp == "poller" || imp == "imapfront" || imp == "bridge" },
			"poller and imapfront meet only in the store; bridge wires them")
	}
	forbid("internal/testkit/storetest", func(imp string) bool { return imp != "store" },
		"the backend contract suite knows the store's types, not its users")
	forbid("storecopy", func(imp string) bool { return imp != "store" },
		"storecopy knows the store's types and copies through its own small interfaces, not a backend")
	forbid("cmd/popbridge", func(imp string) bool { return imp != "bridge" && imp != "internal/demo" },
		"cmd/popbridge parses flags and calls bridge (and launches the demo)")
	for pkg := range imports {
		if isTestKit(pkg) {
			continue
		}
		forbid(pkg, isTestKit, "production code does not import a test kit")
		if strings.HasPrefix(pkg, "internal/lib/") {
			forbid(pkg, func(imp string) bool { return !strings.HasPrefix(imp, "internal/lib/") },
				"a library of internal/lib imports only other libraries of ours")
		}
	}
}

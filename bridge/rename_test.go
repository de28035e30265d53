package bridge

import (
	"context"
	"strings"
	"testing"
)

func TestPreviousNamesValidation(t *testing.T) {
	cfg := testConfig(t, upstream(t, 0), upstream(t, 0))
	cfg.Accounts[0].PreviousNames = []string{"acct2"}        // a current name
	cfg.Accounts[1].PreviousNames = []string{"gone", "gone"} // claimed twice
	var got []string
	for _, ce := range ConfigErrors(cfg.Validate()) {
		got = append(got, ce.Error())
	}
	want := []string{
		`account "acct1": previous_names: "acct2" is the name of a configured account; list only names no [[account]] uses any more`,
		`account "acct2": previous_names: "gone" is also a previous name of account "acct2"; a ledger can be carried over to one account only`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestReloadRefusesRenameOfRunningAccount: the running poller of the old
// name may still write its ledger, so a rename needs a restart.
func TestReloadRefusesRenameOfRunningAccount(t *testing.T) {
	up := upstream(t, 1)
	cfg := testConfig(t, up)
	b := New(cfg, nil)
	run(t, b)
	next := testConfig(t, up)
	next.DataDir = cfg.DataDir
	next.Accounts[0].Name, next.Accounts[0].PreviousNames = "renamed", []string{"acct1"}
	_, err := b.Reload(context.Background(), next)
	if err == nil || !strings.Contains(err.Error(), `account "renamed" renames the running account "acct1" (previous_names): restart popbridge to apply a rename`) {
		t.Fatalf("reload = %v, want a refusal asking for a restart", err)
	}
	if b.Config() != cfg {
		t.Error("running configuration replaced")
	}
}

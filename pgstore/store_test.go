package pgstore

import (
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/internal/testkit/storetest"
)

// TestStore runs the store's behaviour tests against one private
// PostgreSQL, each in its own database. They are written as functions of
// an *env so that a contract suite shared with the SQLite store can run
// them later. The shared contract suite (internal/testkit/storetest) runs
// as its last subtest.
func TestStore(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Users", testUsers},
		{"Mailboxes", testMailboxes},
		{"Messages", testMessages},
		{"MetaBrief", testMetaBrief},
		{"ReadOnly", testReadOnly},
		{"MoveWithinMailbox", testMoveWithinMailbox},
		{"Parity", testParity},
		{"Deliver", testDeliver},
		{"Ledger", testLedger},
		{"ChangesAcrossNodes", testChangesAcrossNodes},
		{"ChangesCatchUpWithoutNotify", testChangesCatchUpWithoutNotify},
		{"ChangesPrune", testChangesPrune},
		{"MailboxChanges", testMailboxChanges},
		{"ChangesGlobalOrder", testChangesGlobalOrder},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentSameDelivery", testConcurrentSameDelivery},
		{"OpposingMoves", testOpposingMoves},
		{"Isolation", testIsolation},
		{"VerifyRepair", testVerifyRepair},
		{"DamageStats", testDamageStats},
		{"OpenConcurrently", testOpenConcurrently},
		{"OpenErrors", testOpenErrors},
		{"Leases", testLeases},
		{"LeaseBatch", testLeaseBatch},
		{"LookLeases", testLookLeases},
		{"FlagsStayInPage", testFlagsStayInPage},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, srv)) })
	}
	// The contract every backend passes (the SQLite store runs it too),
	// each case on a database of its own.
	t.Run("Contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend { return newEnv(t, srv).open(t, "contract") })
	})
}

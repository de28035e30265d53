package bridge

import (
	"github.com/popbridge/popbridge/internal/lib/mailfile"
	"github.com/popbridge/popbridge/internal/lib/passhash"
	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// What cmd/popbridge needs of the other packages, so that it imports bridge
// (and the demo) only: the package graph is the architecture.

// PollResult reports one poll pass of one account.
type PollResult = poller.Result

// AccountStatus is an account's persisted poll status.
type AccountStatus = store.AccountStatus

// VerifyReport is what `popbridge verify` found.
type VerifyReport = store.VerifyReport

// MailboxEntry is one message of a mailbox, as a VerifyReport names it.
type MailboxEntry = store.MailboxEntry

// mbox variants `popbridge import` reads.
const (
	MboxRD = mailfile.MboxRD
	MboxO  = mailfile.MboxO
)

// Password hash algorithms of HashPassword.
const (
	HashArgon2id = passhash.Argon2id
	HashBcrypt   = passhash.Bcrypt
)

// BcryptMaxPassword is the longest password a bcrypt hash covers.
const BcryptMaxPassword = passhash.BcryptMaxPassword

// HashPassword returns a new hash of password for `password_hash`, with
// algo HashArgon2id (the default, "") or HashBcrypt.
func HashPassword(password, algo string) (string, error) {
	return passhash.Hash(password, algo)
}

// LockHolder reports, for an error wrapping store.ErrLocked, the data
// directory and the pid of the process holding it.
func LockHolder(err error) (dir string, pid int, ok bool) {
	return store.LockHolder(err)
}

package imapfront

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// errTarget says what a mailbox name in a command stands for, which decides
// the response code of a missing mailbox (RFC 3501 section 6.3.11, 6.4.7).
type errTarget int

const (
	// targetMailbox: the command operates on the named mailbox itself
	// (SELECT, STATUS, DELETE, RENAME ...): a missing one is NONEXISTENT.
	targetMailbox errTarget = iota
	// targetDest: the mailbox receives messages (APPEND, COPY, MOVE): a
	// missing one is TRYCREATE, so the client may create it and retry.
	targetDest
)

// errInternal is what a client sees for any failure that is not its own
// fault; the detail goes to the log only.
var errInternal = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeServerBug,
	Text: "Internal error",
}

// errReadOnly answers a write command in a mailbox opened with EXAMINE.
var errReadOnly = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeCannot,
	Text: "Mailbox is read-only",
}

// errNoSpace answers a command whose write failed because the server's
// disk is full or over quota (RFC 9051 section 7.1 OVERQUOTA).
var errNoSpace = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeOverQuota,
	Text: "Not enough disk space on the server; nothing was changed, try again later",
}

// errCorrupt answers a command that failed because stored data it needed
// is damaged (RFC 9051 section 7.1 CORRUPTION); the operator is told by
// the log, /healthz and popbridge verify.
var errCorrupt = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeCorruption,
	Text: "Stored data this command needs is damaged on the server (see the server log)",
}

// errShuttingDown answers commands that arrive while the server stops.
var errShuttingDown = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeUnavailable,
	Text: "Server is shutting down",
}

// errStoreUnavailable answers a command whose store call failed because
// the store's database cannot be reached (store.ErrUnavailable, several
// nodes on PostgreSQL): a temporary condition, not a server bug. A write
// changed nothing (the store commits all or nothing).
var errStoreUnavailable = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeUnavailable,
	Text: "The mail store is unreachable for the moment; nothing was changed, try again shortly",
}

// errPoisoned answers every command once the connection was poisoned by a
// rejected literal (docs/imapserver-workarounds.md, "Rejected literals run as commands").
var errPoisoned = &imap.Error{
	Type: imap.StatusResponseTypeBad,
	Code: imap.ResponseCodeClientBug,
	Text: "Connection closed after a rejected literal",
}

// mapStoreError turns an error of the store into the *imap.Error the client
// gets. It is the only place where store errors meet IMAP response codes.
// Errors that are not the client's fault are logged with op and answered
// with errInternal; a client that hung up is logged at debug level only.
func mapStoreError(log *slog.Logger, op string, target errTarget, err error) error {
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return imapErr
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		if target == targetDest {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, store.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, store.ErrInvalidName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, store.ErrInboxDelete):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted"}
	case errors.Is(err, store.ErrHasChildren):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeHasChildren, Text: "Mailbox has children"}
	case errors.Is(err, store.ErrNoSelect):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is not selectable"}
	case errors.Is(err, store.ErrUnavailable):
		log.Warn("imap command failed: the store's database is unreachable", "op", op, "err", err)
		return errStoreUnavailable
	case errors.Is(err, store.ErrClosed):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Store unavailable"}
	case errors.Is(err, store.ErrNoSpace):
		// Nothing was changed (the store commits all or nothing); the
		// client may retry once space is freed. Dovecot answers the same.
		log.Warn("imap command failed: the data directory is full", "op", op, "err", err)
		return errNoSpace
	case errors.Is(err, store.ErrDatabaseCorrupt), errors.Is(err, store.ErrCorrupt):
		log.Error("imap command failed: stored data is damaged", "op", op, "err", err)
		return errCorrupt
	}
	if isHangUp(err) {
		// Writing the answer failed because the client went away: not a
		// server failure (imapserver's own such lines are at debug too).
		log.Debug("imap client hung up during a command", "op", op, "err", err)
		return errInternal
	}
	log.Error("imap command failed", "op", op, "err", err)
	return errInternal
}

// maxDamagedListed is how many UIDs of damaged messages errDamaged names.
const maxDamagedListed = 10

// errDamaged ends a FETCH that answered every message it could but found
// the stored data of the messages uids (ascending) damaged: those got no
// FETCH response, and the command ends NO [CORRUPTION] (RFC 9051 section
// 7.1) naming them, as Dovecot's imap_fetch_failure=no-after does. The
// client learns which messages are broken and keeps what it got for the
// others: go-imap's client returns them with the error, Python's imaplib
// keeps them as untagged responses, and mbsync skips the message and syncs
// the rest (a response lacking the body it asked for made it abort).
func errDamaged(uids []store.UID) error {
	var b strings.Builder
	for i, uid := range uids[:min(len(uids), maxDamagedListed)] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, uint32(uid))
	}
	if len(uids) > maxDamagedListed {
		fmt.Fprintf(&b, " and %d more", len(uids)-maxDamagedListed)
	}
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCorruption,
		Text: fmt.Sprintf("The stored data of UID %s is damaged and could not be read; the other messages were returned", b.String()),
	}
}

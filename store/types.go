package store

import (
	"errors"
	"time"
)

// UserID identifies a local user.
type UserID int64

// MailboxID identifies one mailbox. A mailbox that is deleted and created
// again under the same name gets a new MailboxID and a new UIDVALIDITY.
type MailboxID int64

// MessageID identifies one stored message body. A message copied into
// several mailboxes is stored once and shares its MessageID.
type MessageID int64

// UID is a message's IMAP unique identifier within one mailbox.
type UID uint32

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrNotFound is returned when a user, mailbox or message does not exist
	// or does not belong to the user named in the call.
	ErrNotFound = errors.New("store: not found")
	// ErrExists is returned when creating a user or mailbox that already exists.
	ErrExists = errors.New("store: already exists")
	// ErrInvalidName is returned for a user or mailbox name that is refused
	// (empty segment, NUL or control characters, invalid UTF-8, "." or ".."
	// segments, leading or trailing "/", over-long names).
	ErrInvalidName = errors.New("store: invalid name")
	// ErrInboxDelete is returned when asked to delete INBOX.
	ErrInboxDelete = errors.New("store: INBOX cannot be deleted")
	// ErrHasChildren is returned when deleting a \Noselect mailbox that still
	// has children (RFC 3501 section 6.3.4).
	ErrHasChildren = errors.New("store: mailbox has children")
	// ErrNoSelect is returned when a message operation targets a \Noselect
	// placeholder mailbox.
	ErrNoSelect = errors.New("store: mailbox is not selectable")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store: closed")
	// ErrLocked is returned by Open when another Store (in this process or
	// another) has the data directory open. The error's text names the
	// directory and, when known, the pid of the process holding it.
	ErrLocked = errors.New("store: data directory in use")
	// ErrReadOnly is returned by every write method of a Store opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("store: read-only")
)

// Delimiter separates the levels of a mailbox name.
const Delimiter = '/'

// Inbox is the canonical name of every user's inbox.
const Inbox = "INBOX"

// Special-use attributes (RFC 6154) a mailbox may carry.
const (
	SpecialAll     = `\All`
	SpecialArchive = `\Archive`
	SpecialDrafts  = `\Drafts`
	SpecialFlagged = `\Flagged`
	SpecialJunk    = `\Junk`
	SpecialSent    = `\Sent`
	SpecialTrash   = `\Trash`
)

// System flags. Any other flag is a keyword.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// User is a local IMAP user.
type User struct {
	ID      UserID
	Name    string
	Created time.Time
}

// Mailbox is one folder of a user.
type Mailbox struct {
	ID   MailboxID
	User UserID
	// Name is the full hierarchical name with "/" as delimiter; INBOX is
	// always spelled "INBOX".
	Name          string
	UIDValidity   uint32
	UIDNext       UID
	HighestModSeq uint64
	// SpecialUse is "" or one of the Special* constants.
	SpecialUse string
	Subscribed bool
	// NoSelect marks a placeholder left by deleting a mailbox that has
	// children (RFC 3501 section 6.3.4), or an intermediate level.
	NoSelect bool
}

// MailboxCounts are the figures STATUS and SELECT report.
type MailboxCounts struct {
	Messages uint32
	Unseen   uint32
	Deleted  uint32
	// Size is the sum of RFC822.SIZE of all messages (STATUS SIZE).
	Size int64
}

// Entry is a message as it stands in one mailbox.
type Entry struct {
	UID     UID
	Message MessageID
	// Flags holds system flags (canonical spelling, e.g. `\Seen`) and
	// keywords, sorted, without duplicates.
	Flags  []string
	ModSeq uint64
}

// Snapshot is a consistent view of a mailbox: its metadata and every entry,
// ascending by UID, read in one transaction. Mailbox.HighestModSeq is the
// modseq of the last change included; changes from the feed with a higher
// ModSeq are newer than the snapshot.
type Snapshot struct {
	Mailbox Mailbox
	Entries []Entry
}

// Address is one address of an envelope, decoded to UTF-8.
type Address struct {
	Name    string
	Mailbox string
	Host    string
}

// Envelope is the decoded ENVELOPE of a message (RFC 3501 section 7.4.2).
type Envelope struct {
	Date    time.Time
	Subject string
	From    []Address
	Sender  []Address
	ReplyTo []Address
	To      []Address
	Cc      []Address
	Bcc     []Address
	// InReplyTo and MessageID hold message ids without their angle
	// brackets, as go-imap's Envelope does.
	InReplyTo []string
	MessageID string
}

// Part is one node of a message's MIME structure, computed once at delivery.
// Offsets are byte positions in the raw message, so BODY[n], BODY[n.MIME],
// BODY[n.HEADER] and BODY[n.TEXT] can be served without parsing.
type Part struct {
	// Type and Subtype are lower-case, e.g. "text" and "plain".
	Type    string
	Subtype string
	// Params are the Content-Type parameters, keys lower-case.
	Params      map[string]string `json:",omitempty"`
	ID          string            `json:",omitempty"`
	Description string            `json:",omitempty"`
	// Encoding is the Content-Transfer-Encoding, upper-case, "7BIT" when absent.
	Encoding string
	// Size is the size in bytes of the encoded body of this part.
	Size int64
	// Lines is the number of lines of the body, for text/* and message/rfc822.
	Lines             int64
	MD5               string            `json:",omitempty"`
	Disposition       string            `json:",omitempty"`
	DispositionParams map[string]string `json:",omitempty"`
	Language          []string          `json:",omitempty"`
	Location          string            `json:",omitempty"`
	// Children holds the parts of a multipart. It is never empty for a
	// multipart: a multipart without parts is stored as text/plain.
	Children []*Part `json:",omitempty"`
	// Envelope and Body describe the enclosed message of a message/rfc822 part.
	Envelope *Envelope `json:",omitempty"`
	Body     *Part     `json:",omitempty"`
	// HeaderStart is where this part's header begins; BodyStart where its
	// body begins (just after the blank line); End where the body ends.
	HeaderStart int64
	BodyStart   int64
	End         int64
	// DecodedSize is, for leaf parts, the size of the body after undoing
	// the transfer encoding by DecodeStrict's rules (BINARY.SIZE), or -1:
	// not known, because strict decoding fails or because the structure
	// was stored before sizes were measured so (decode to find out).
	DecodedSize int64
}

// MessageMeta is what FETCH needs without reading a body. Envelope and
// Structure (and everything they point to) are shared with the store's
// metadata cache and with other callers: they are read-only, like
// Entry.Flags.
type MessageMeta struct {
	Entry
	InternalDate time.Time
	Size         int64
	Envelope     *Envelope
	Structure    *Part
	// Damaged is set for a message not indexed yet whose bytes could not
	// be read (ErrCorrupt): Envelope and Structure are then nil.
	Damaged bool
}

// FlagOp says how UpdateFlags applies its flags.
type FlagOp int

// The flag operations of STORE.
const (
	FlagsAdd     FlagOp = iota // +FLAGS
	FlagsRemove                // -FLAGS
	FlagsReplace               // FLAGS
)

// CopyResult reports the UIDs of a COPY or MOVE for COPYUID (RFC 4315).
type CopyResult struct {
	UIDValidity uint32 // of the destination
	Source      []UID  // ascending
	Dest        []UID  // Dest[i] is the new UID of Source[i]
}

// TextKind selects where SearchText looks.
type TextKind int

// Where SearchText looks.
const (
	TextHeader TextKind = iota // one header field (TextQuery.Header), or all headers if Header is ""
	TextBody                   // the decoded text of the body
	TextAll                    // headers and body (SEARCH TEXT)
)

// TextQuery is a case-insensitive substring search over decoded text.
type TextQuery struct {
	Kind   TextKind
	Header string // field name for TextHeader, case-insensitive
	Needle string
}

// ChangeKind says what a Change reports.
type ChangeKind int

// The kinds of Change.
const (
	ChangeAdd            ChangeKind = iota + 1 // Entries were added to Mailbox
	ChangeFlags                                // Entries' flags changed
	ChangeExpunge                              // UIDs were expunged
	ChangeMailboxCreated                       // Mailbox was created
	ChangeMailboxRenamed                       // renamed from OldName to MailboxName
	ChangeMailboxDeleted                       // Mailbox was deleted
	ChangeSubscription                         // subscription state changed
	// ChangeResync replaces changes a subscriber fell too far behind to
	// receive (Feed): it carries nothing; the subscriber re-reads its state.
	ChangeResync
)

// Change is one committed change, published to subscribers in commit order.
type Change struct {
	Kind        ChangeKind
	User        UserID
	Mailbox     MailboxID
	MailboxName string
	OldName     string // ChangeMailboxRenamed only
	// ModSeq is the mailbox's HIGHESTMODSEQ after this change.
	ModSeq uint64
	// Entries holds the added entries (ChangeAdd) or the entries with their
	// new flags (ChangeFlags), ascending by UID.
	Entries []Entry
	// UIDs holds the expunged UIDs (ChangeExpunge), ascending.
	UIDs []UID
	// Origin is the opaque value passed in the context with WithOrigin by the
	// writer, so a session can recognise its own changes.
	Origin any
}

// Delivery is one message fetched from an upstream account.
type Delivery struct {
	Account string // the upstream account's name: the ledger key
	UIDL    string // the server's unique id; "" for a UIDL-less server
	// Digest identifies the content (opaque to the store, chosen by the
	// poller); together with UIDL it tells a reused UIDL from a known message.
	Digest string
	User   string // local user name whose mailbox receives the message
	Folder string // mailbox name, created when missing
	Raw    []byte
	// InternalDate is when the message was received; zero means now.
	InternalDate time.Time
}

// Delivered reports where a Delivery was stored.
type Delivered struct {
	Mailbox MailboxID
	UID     UID
	Message MessageID
}

// LedgerEntry is one row of an account's POP ledger.
type LedgerEntry struct {
	Account  string
	UIDL     string
	Digest   string
	Size     int64
	StoredAt time.Time
	// Message is the local message it became; 0 once it has been expunged
	// from every local mailbox (or for a skipped message).
	Message MessageID
	// Expunged is true when the message no longer exists in any local mailbox.
	Expunged bool
	// Skipped holds the reason a message was not fetched ("too large"); "" otherwise.
	Skipped string
	// DeletePending is true when DELE was sent but not yet confirmed by QUIT.
	DeletePending bool
	// DeletedAt is when the message left the server: the upstream
	// confirmed a deletion popbridge sent ([Store.MarkDeleted]), or a
	// complete listing no longer showed it ([Store.MarkGone]); zero while
	// it is listed. A row with DeletedAt set is a tombstone.
	DeletedAt time.Time
	// LastSeen is the last time the UIDL appeared in the upstream listing.
	LastSeen time.Time
}

// AccountStatus is the persisted state of an upstream account's poller, for
// `popbridge status`, logs and metrics.
type AccountStatus struct {
	Account       string
	LastAttempt   time.Time
	LastSuccess   time.Time
	LastError     string
	LastErrorAt   time.Time
	Fetched       int64 // messages fetched, all time
	FetchedBytes  int64
	Skipped       int64 // messages skipped (too large), all time
	UpstreamCount int64 // messages left on the server after the last listing and its confirmed deletions
	// Identity anomalies, all time: see [IdentityAnomalies].
	Anomalies IdentityAnomalies
}

// IdentityAnomalies counts what an upstream did to message identities, as
// the poller found by comparing whole-message digests. None of them loses
// or duplicates mail; each is a sign of a server that does not keep RFC
// 1939's promise about UIDLs, and is shown to the operator.
type IdentityAnomalies struct {
	// UIDLReused counts messages listed under a UIDL that had named other
	// content before.
	UIDLReused int64
	// Renumbered counts messages listed under a new UIDL whose content was
	// already stored under another one (recorded, not stored again).
	Renumbered int64
	// Twins counts messages listed under an identity that one listing gave
	// to more than one message, or whose content another message of the
	// same listing also had.
	Twins int64
	// Unproven counts, per poll, messages the deletion policy wanted gone
	// whose identity that poll could not prove: they stayed on the server.
	Unproven int64
}

// Add returns the sum of a and b.
func (a IdentityAnomalies) Add(b IdentityAnomalies) IdentityAnomalies {
	return IdentityAnomalies{a.UIDLReused + b.UIDLReused, a.Renumbered + b.Renumbered, a.Twins + b.Twins, a.Unproven + b.Unproven}
}

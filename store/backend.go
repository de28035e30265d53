package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
)

// ErrUnavailable is wrapped by the errors of a store whose database
// server cannot be reached or whose connection to it was lost during the
// call (package pgstore); the call may succeed once the server is back.
// Front ends answer it as a temporary failure (IMAP NO [UNAVAILABLE]).
// The SQLite store, embedded, never returns it.
var ErrUnavailable = errors.New("store: database unavailable")

// Thin exported wrappers over the store's parser, metadata codec, flag
// rules and text search, for other store backends (package pgstore) that
// must answer exactly as this one does. Nothing here has state or touches
// the database.

// ParsedMessage is what the store derives from a message's bytes once,
// when the message enters it.
type ParsedMessage struct {
	// Raw is the message as stored: every bare LF made CRLF, NUL and bare
	// CR kept.
	Raw       []byte
	Envelope  *Envelope
	Structure *Part
	// HeaderText is the decoded top-level header, one "name: value\n" line
	// per field, lower-case; BodyText the decoded text of the text/* parts
	// and enclosed headers, lower-case. [MatchText] searches them.
	HeaderText string
	BodyText   string
	// Panicked holds the value of a parser panic (a bug), nil otherwise:
	// the message was then described as one text/plain part.
	Panicked any
}

// ParseMessage normalises raw's line ends and parses it with the store's
// MIME parser. It never fails: what the parser cannot make sense of
// becomes text/plain with a best-effort envelope.
func ParseMessage(raw []byte) ParsedMessage {
	pm := parseMessage(normalizeCRLF(raw))
	return ParsedMessage{Raw: pm.raw, Envelope: pm.envelope, Structure: pm.structure,
		HeaderText: pm.headerText, BodyText: pm.bodyText, Panicked: pm.panicked}
}

// NormalizeCRLF returns raw with every bare LF made CRLF (NUL and bare CR
// kept), as ParseMessage stores it, without parsing it; raw itself when it
// has no bare LF.
func NormalizeCRLF(raw []byte) []byte { return normalizeCRLF(raw) }

// EncodeMeta returns the stored (binary) forms of an envelope and a
// structure, as this store writes them to messages.envelope and
// messages.structure.
func EncodeMeta(env *Envelope, st *Part) (envBlob, stBlob []byte) {
	return appendEnvelopeBlob(nil, env), appendStructureBlob(nil, st)
}

// DecodeMeta decodes blobs written by [EncodeMeta] (or the JSON form of
// older rows). The strings of the result are substrings of env and st.
func DecodeMeta(env, st string) (*Envelope, *Part, error) {
	e, _, err := decodeEnvelope(env)
	if err != nil {
		return nil, nil, err
	}
	p, _, err := decodeStructure(st)
	if err != nil {
		return nil, nil, err
	}
	return e, p, nil
}

// CanonicalFlags returns flags as the store keeps them: system flags
// matched case-insensitively and spelled canonically, keywords
// deduplicated case-insensitively, \Recent, unknown system flags and
// keywords that are not IMAP atoms dropped; sorted.
func CanonicalFlags(flags []string) []string { return parseFlags(flags).list() }

// ApplyFlags returns the flags that result from applying op with arg to
// cur, as [Store.UpdateFlags] does; the result is canonical and sorted.
func ApplyFlags(cur []string, op FlagOp, arg []string) []string {
	return parseFlags(cur).apply(op, parseFlags(arg)).list()
}

// ValidateUserName refuses (wrapping ErrInvalidName) the user names
// [Store.EnsureUser] refuses: empty or over-long names, invalid UTF-8 and
// control characters.
func ValidateUserName(name string) error { return validateUserName(name) }

// ParentNames returns the proper ancestors of a canonical mailbox name,
// outermost first: "a/b/c" gives ["a", "a/b"].
func ParentNames(name string) []string { return parentNames(name) }

// ValidSpecialUse reports whether su is "" or a special-use attribute the
// store accepts.
func ValidSpecialUse(su string) bool { return validSpecialUse(su) }

// TextMatcher is a [TextQuery] prepared for matching many messages.
type TextMatcher struct {
	kind    TextKind
	byField bool
	prefix  []byte
	needle  []byte
}

// NewTextMatcher prepares q as [Store.SearchText] does: the needle is
// lower-cased with its white space collapsed, the header name lower-cased
// and trimmed.
func NewTextMatcher(q TextQuery) TextMatcher {
	field := strings.ToLower(strings.TrimSpace(q.Header))
	return TextMatcher{kind: q.Kind, byField: q.Kind == TextHeader && field != "",
		prefix: []byte(field + ": "), needle: []byte(collapseSpace(strings.ToLower(q.Needle)))}
}

// Needle returns the prepared needle: lower-case, white space collapsed.
// A stored text that does not contain it cannot match.
func (m TextMatcher) Needle() string { return string(m.needle) }

// Match reports whether a message with the stored texts headerText and
// bodyText (ParsedMessage.HeaderText and BodyText) matches, with the
// semantics of [Store.SearchText].
func (m TextMatcher) Match(headerText, bodyText []byte) bool {
	ok, _ := textMatches(func() ([]byte, error) { return headerText, nil }, func(needle []byte) (bool, error) { return bytes.Contains(bodyText, needle), nil },
		m.kind, m.byField, m.prefix, m.needle)
	return ok
}

// OriginOf returns the origin that [WithOrigin] put in ctx, or nil: a
// backend copies it into Change.Origin of the changes a write causes.
func OriginOf(ctx context.Context) any { return ctx.Value(originKey{}) }

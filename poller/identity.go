package poller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// contentDigest is the ledger digest of a message: the SHA-256 of the raw
// bytes as retrieved, in hex. Together with the UIDL it tells a known
// message from a new message that reuses an old UIDL.
func contentDigest(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// syntheticUIDLPrefix starts the identity the poller makes up for a message
// on a server without UIDL.
const syntheticUIDLPrefix = "~h"

// syntheticUIDL is the identity of a message on a server without UIDL: its
// header digest (from TOP n 0) and its LIST size. Message numbers are not
// stable across sessions, but a message's header and size are. It serves as
// the ledger UIDL, so every ledger operation works the same for both kinds
// of server.
func syntheticUIDL(headerDigest string, size int64) string {
	if len(headerDigest) > 40 {
		headerDigest = headerDigest[:40]
	}
	return syntheticUIDLPrefix + headerDigest + "." + strconv.FormatInt(size, 10)
}

// maxHeaderScan bounds how much of a message internalDate looks at.
const maxHeaderScan = 256 << 10

// internalDate returns the date of the topmost Received: header of raw (the
// time the upstream server accepted the message), or the zero time when
// there is none or it does not parse, in which case the store uses the
// delivery time. Using the upstream's date keeps a first import of an old
// maildrop sorted by arrival in IMAP clients.
func internalDate(raw []byte, now time.Time) time.Time {
	if len(raw) > maxHeaderScan {
		raw = raw[:maxHeaderScan]
	}
	var field []byte
	inReceived := false
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inReceived {
				field = append(field, ' ')
				field = append(field, bytes.TrimSpace(line)...)
			}
			continue
		}
		if inReceived {
			break // the topmost Received: is complete
		}
		if len(line) > 9 && strings.EqualFold(string(line[:9]), "received:") {
			inReceived = true
			field = append(field, line[9:]...)
		}
	}
	if !inReceived {
		return time.Time{}
	}
	i := bytes.LastIndexByte(field, ';')
	if i < 0 {
		return time.Time{}
	}
	t, err := mail.ParseDate(strings.TrimSpace(string(field[i+1:])))
	if err != nil || t.Year() < 1990 || t.After(now.Add(24*time.Hour)) {
		return time.Time{}
	}
	return t
}

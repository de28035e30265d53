package store

import (
	"net/mail"
	"strings"
)

// envelopeOf builds the envelope of a message from its header fields.
func envelopeOf(h header) *Envelope {
	env := &Envelope{
		Subject:   decodeHeaderValue(h.get("Subject")),
		From:      addressList(h.get("From")),
		Sender:    addressList(h.get("Sender")),
		ReplyTo:   addressList(h.get("Reply-To")),
		To:        addressList(h.get("To")),
		Cc:        addressList(h.get("Cc")),
		Bcc:       addressList(h.get("Bcc")),
		InReplyTo: msgIDs(h.get("In-Reply-To")),
	}
	if d := h.get("Date"); d != "" {
		if t, err := mail.ParseDate(d); err == nil {
			env.Date = t
		}
	}
	if ids := msgIDs(h.get("Message-Id")); len(ids) > 0 {
		env.MessageID = ids[0]
	}
	return env
}

// msgIDs returns the message ids of a field, without angle brackets. A
// value without brackets is taken whole.
func msgIDs(v string) []string {
	var out []string
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		if id := strings.TrimSpace(rest[i+1 : i+j]); id != "" {
			out = append(out, toUTF8String(id))
		}
		rest = rest[i+j+1:]
	}
	if len(out) == 0 {
		if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, " \t") {
			out = append(out, toUTF8String(v))
		}
	}
	return out
}

var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

// addressList parses an address field (RFC 5322 section 3.4) into
// ENVELOPE addresses (RFC 3501 section 7.4.2): a group becomes a start
// marker (its name in Mailbox, no Host), its members and an end marker (all
// empty); comments are dropped, except that the last comment of a mailbox
// written as a bare addr-spec becomes its name ("user@host (Real Name)"),
// as Dovecot does; a source route ("<@route:user@host>") is dropped, since
// go-imap's Address has no field for it. A mailbox the strict parser
// refuses is read leniently; one without "@" is kept only inside a group.
func addressList(v string) []Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	v = toUTF8String(v)
	var out []Address
	for _, it := range splitAddressItems(v) {
		if !it.group {
			if a, ok := parseMailbox(it.text, it.comment, false); ok {
				out = append(out, a)
			}
			continue
		}
		out = append(out, Address{Mailbox: decodeHeaderValue(strings.Trim(strings.TrimSpace(it.name), `"`))})
		for _, m := range it.members {
			if a, ok := parseMailbox(m.text, m.comment, true); ok {
				out = append(out, a)
			}
		}
		out = append(out, Address{})
	}
	return out
}

// addrItem is one top-level item of an address field: a mailbox (text,
// with comments removed, and its last comment) or a group (name and
// members).
type addrItem struct {
	text, comment string
	group         bool
	name          string
	members       []addrItem
}

// splitAddressItems splits an address field at its top-level commas and
// groups ("name: a, b;"), outside quoted strings, comments and angle
// brackets; comments are removed from the text and the last one of each
// item is kept apart.
func splitAddressItems(v string) []addrItem {
	var items []addrItem
	var cur strings.Builder
	var comment, lastComment strings.Builder
	var group *addrItem
	inQuote, escaped, angle, depth := false, false, 0, 0
	flush := func() {
		it := addrItem{text: strings.TrimSpace(cur.String()), comment: strings.TrimSpace(lastComment.String())}
		cur.Reset()
		lastComment.Reset()
		if it.text == "" {
			return
		}
		if group != nil {
			group.members = append(group.members, it)
		} else {
			items = append(items, it)
		}
	}
	for _, r := range v {
		switch {
		case escaped:
			escaped = false
			if depth > 0 {
				comment.WriteRune(r)
			} else {
				cur.WriteRune(r)
			}
			continue
		case r == '\\' && (inQuote || depth > 0):
			escaped = true
			if depth == 0 {
				cur.WriteRune(r)
			}
			continue
		case depth > 0:
			switch r {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					lastComment.Reset()
					lastComment.WriteString(comment.String())
					comment.Reset()
					cur.WriteByte(' ')
					continue
				}
			}
			comment.WriteRune(r)
			continue
		case inQuote:
			if r == '"' {
				inQuote = false
			}
			cur.WriteRune(r)
			continue
		}
		switch r {
		case '"':
			inQuote = true
		case '(':
			depth = 1
			continue
		case '<':
			angle++
		case '>':
			if angle > 0 {
				angle--
			}
		case ',':
			if angle == 0 {
				flush()
				continue
			}
		case ':':
			if angle == 0 && group == nil {
				group = &addrItem{group: true, name: cur.String()}
				cur.Reset()
				lastComment.Reset()
				continue
			}
		case ';':
			if angle == 0 && group != nil {
				flush()
				items = append(items, *group)
				group = nil
				continue
			}
		}
		cur.WriteRune(r)
	}
	flush()
	if group != nil { // a group without its ";"
		items = append(items, *group)
	}
	return items
}

// parseMailbox reads one mailbox (comments already removed): strictly with
// net/mail, else leniently. Without "@" it is kept only when inGroup.
func parseMailbox(text, comment string, inGroup bool) (Address, bool) {
	// Whitespace left where comments were inside <...> is not part of the
	// address; a source route is dropped.
	if i := strings.IndexByte(text, '<'); i >= 0 {
		if j := strings.LastIndexByte(text, '>'); j > i {
			addr := strings.Join(strings.Fields(text[i+1:j]), "")
			if strings.HasPrefix(addr, "@") {
				if k := strings.IndexByte(addr, ':'); k >= 0 {
					addr = addr[k+1:]
				}
			}
			text = text[:i] + "<" + addr + ">" + text[j+1:]
		}
	} else {
		text = strings.Join(strings.Fields(text), "")
	}
	bare := !strings.Contains(text, "<") // an addr-spec, not name-addr
	name, addr := "", ""
	if a, err := addressParser.Parse(text); err == nil {
		name, addr = toUTF8String(a.Name), a.Address
	} else {
		addr = text
		if i := strings.LastIndexByte(text, '<'); i >= 0 {
			name = decodeHeaderValue(strings.Trim(strings.TrimSpace(text[:i]), `"`))
			addr = strings.TrimSuffix(strings.TrimSpace(text[i+1:]), ">")
		}
		addr = strings.TrimSpace(addr)
	}
	if addr == "" || (!inGroup && !strings.Contains(addr, "@")) {
		return Address{}, false
	}
	if name == "" && comment != "" && bare {
		name = decodeHeaderValue(comment)
	}
	return splitAddress(name, addr), true
}

func splitAddress(name, addr string) Address {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return Address{Name: name, Mailbox: addr}
	}
	return Address{Name: name, Mailbox: addr[:i], Host: addr[i+1:]}
}

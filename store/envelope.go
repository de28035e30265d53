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

// addressList parses an address field; when the strict parser refuses it,
// each comma-separated item is read on its own.
func addressList(v string) []Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	v = toUTF8String(v)
	if list, err := addressParser.ParseList(v); err == nil {
		out := make([]Address, 0, len(list))
		for _, a := range list {
			out = append(out, splitAddress(toUTF8String(a.Name), a.Address))
		}
		return out
	}
	var out []Address
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if a, err := addressParser.Parse(item); err == nil {
			out = append(out, splitAddress(toUTF8String(a.Name), a.Address))
			continue
		}
		name, addr := "", item
		if i := strings.LastIndexByte(item, '<'); i >= 0 {
			name = strings.Trim(strings.TrimSpace(item[:i]), `"`)
			addr = strings.TrimSuffix(strings.TrimSpace(item[i+1:]), ">")
		}
		if !strings.Contains(addr, "@") {
			continue
		}
		out = append(out, splitAddress(decodeHeaderValue(name), strings.TrimSpace(addr)))
	}
	return out
}

func splitAddress(name, addr string) Address {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return Address{Name: name, Mailbox: addr}
	}
	return Address{Name: name, Mailbox: addr[:i], Host: addr[i+1:]}
}

package store

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// The envelope and structure of a message are stored in messages.envelope
// and messages.structure, written once at delivery and decoded by every
// Meta. Two encodings exist, told apart by the first byte:
//
//   - '{': JSON (encoding/json of *Envelope / *Part), the form written before
//     the binary encoding existed. Such rows are still decoded.
//   - metaFormatV1: the compact binary form below.
//   - metaFormatV2 (structures only): the same form, written by every
//     insert since Part.DecodedSize is measured by DecodeStrict's rules
//     (-1: the part cannot be decoded). A structure in JSON or in
//     metaFormatV1 has sizes measured by the earlier, lenient rules; they
//     decode with every DecodedSize -1, "not known, decode to find out".
//
// Binary form, version 1 (uv = unsigned varint, sv = zig-zag signed varint,
// str = uv length + bytes, list = uv n+1 then n items, 0 meaning nil, so
// that nil and empty slices and maps survive a round trip):
//
//	envelope blob  := 0x01 uv(addresses) uv(strings) envelope
//	structure blob := 0x01 uv(parts) uv(children) uv(envelopes) uv(addresses) uv(strings) part
//	envelope := date str(Subject) addrs(From) addrs(Sender) addrs(ReplyTo)
//	            addrs(To) addrs(Cc) addrs(Bcc) strs(InReplyTo) str(MessageID)
//	date     := 0x00 (zero time) | 0x01 sv(unix seconds) uv(nanoseconds) sv(zone offset seconds)
//	addrs    := list of (str(Name) str(Mailbox) str(Host))
//	strs     := list of str
//	map      := list of (str(key) str(value)), keys ascending
//	part     := 0x00 (nil) | 0x01 str(Type) str(Subtype) map(Params) str(ID)
//	            str(Description) str(Encoding) sv(Size) sv(Lines) str(MD5)
//	            str(Disposition) map(DispositionParams) strs(Language)
//	            str(Location) list of part (Children)
//	            (0x00 | 0x01 envelope) (Envelope) part (Body)
//	            sv(HeaderStart) sv(BodyStart) sv(End) sv(DecodedSize)
//
// The counts in the blob headers size the decoder's slabs, so a message
// decodes with a handful of allocations: every string of a blob is a
// substring of one string (the blob itself), and the parts, child pointers,
// nested envelopes, addresses and string lists each come from one slice.
// The counts are hints: a blob whose counts are wrong still decodes (or
// fails cleanly) and never makes the decoder allocate more than its length
// allows.

// metaFormatV1 is the first byte of a binary-encoded envelope, and of a
// structure written before metaFormatV2.
const metaFormatV1 byte = 0x01

// metaFormatV2 is the first byte of a binary-encoded structure whose
// DecodedSize values follow DecodeStrict.
const metaFormatV2 byte = 0x02

// maxDecodeDepth bounds the nesting the decoder accepts (the parser never
// nests deeper than maxPartDepth), so a corrupt blob cannot recurse deeply.
const maxDecodeDepth = 4 * maxPartDepth

// errCorruptMeta is wrapped by every decoding error of a binary blob.
var errCorruptMeta = errors.New("corrupt metadata encoding")

// metaCounts counts what a structure or envelope holds, for the blob header
// and the cache's memory estimate.
type metaCounts struct {
	parts, children, envelopes, addrs, strs int
	maps                                    int // estimate only
}

// bytes estimates the memory of the structs, slices and maps counted.
func (c metaCounts) bytes() int64 {
	return int64(c.parts)*int64(unsafe.Sizeof(Part{})) +
		int64(c.children)*int64(unsafe.Sizeof(&Part{})) +
		int64(c.envelopes)*int64(unsafe.Sizeof(Envelope{})) +
		int64(c.addrs)*int64(unsafe.Sizeof(Address{})) +
		int64(c.strs)*int64(unsafe.Sizeof("")) +
		int64(c.maps)*mapOverhead
}

func (c *metaCounts) envelope(e *Envelope) {
	c.addrs += len(e.From) + len(e.Sender) + len(e.ReplyTo) + len(e.To) + len(e.Cc) + len(e.Bcc)
	c.strs += len(e.InReplyTo)
}

func (c *metaCounts) part(p *Part) {
	if p == nil {
		return
	}
	c.parts++
	c.children += len(p.Children)
	c.strs += len(p.Language)
	for _, ch := range p.Children {
		c.part(ch)
	}
	if p.Envelope != nil {
		c.envelopes++
		c.envelope(p.Envelope)
	}
	c.part(p.Body)
}

// appendEnvelopeBlob appends the binary encoding of e (nil: an empty
// envelope) to b.
func appendEnvelopeBlob(b []byte, e *Envelope) []byte {
	if e == nil {
		e = &Envelope{}
	}
	var c metaCounts
	c.envelope(e)
	b = append(b, metaFormatV1)
	b = binary.AppendUvarint(b, uint64(c.addrs))
	b = binary.AppendUvarint(b, uint64(c.strs))
	return appendEnvelope(b, e)
}

// appendStructureBlob appends the binary encoding of p (nil: an empty part)
// to b.
func appendStructureBlob(b []byte, p *Part) []byte {
	if p == nil {
		p = &Part{}
	}
	var c metaCounts
	c.part(p)
	b = append(b, metaFormatV2)
	for _, n := range []int{c.parts, c.children, c.envelopes, c.addrs, c.strs} {
		b = binary.AppendUvarint(b, uint64(n))
	}
	return appendPart(b, p)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendListLen writes n+1, or 0 for a nil list.
func appendListLen(b []byte, n int, isNil bool) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

func appendStrs(b []byte, l []string) []byte {
	b = appendListLen(b, len(l), l == nil)
	for _, s := range l {
		b = appendStr(b, s)
	}
	return b
}

func appendAddrs(b []byte, l []Address) []byte {
	b = appendListLen(b, len(l), l == nil)
	for _, a := range l {
		b = appendStr(b, a.Name)
		b = appendStr(b, a.Mailbox)
		b = appendStr(b, a.Host)
	}
	return b
}

func appendMap(b []byte, m map[string]string) []byte {
	b = appendListLen(b, len(m), m == nil)
	if len(m) == 0 {
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, m[k])
	}
	return b
}

func appendDate(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	_, off := t.Zone()
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	return binary.AppendVarint(b, int64(off))
}

func appendEnvelope(b []byte, e *Envelope) []byte {
	b = appendDate(b, e.Date)
	b = appendStr(b, e.Subject)
	for _, l := range [...][]Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		b = appendAddrs(b, l)
	}
	b = appendStrs(b, e.InReplyTo)
	return appendStr(b, e.MessageID)
}

func appendPart(b []byte, p *Part) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendStr(b, p.Type)
	b = appendStr(b, p.Subtype)
	b = appendMap(b, p.Params)
	b = appendStr(b, p.ID)
	b = appendStr(b, p.Description)
	b = appendStr(b, p.Encoding)
	b = binary.AppendVarint(b, p.Size)
	b = binary.AppendVarint(b, p.Lines)
	b = appendStr(b, p.MD5)
	b = appendStr(b, p.Disposition)
	b = appendMap(b, p.DispositionParams)
	b = appendStrs(b, p.Language)
	b = appendStr(b, p.Location)
	b = appendListLen(b, len(p.Children), p.Children == nil)
	for _, c := range p.Children {
		b = appendPart(b, c)
	}
	if p.Envelope == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendEnvelope(b, p.Envelope)
	}
	b = appendPart(b, p.Body)
	for _, v := range [...]int64{p.HeaderStart, p.BodyStart, p.End, p.DecodedSize} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// Minimum encoded sizes of the counted items, which bound the slab sizes a
// blob can ask for.
const (
	minPartBytes     = 21 // tag, 13 empty fields, nil children, no envelope, nil body, 4 offsets
	minEnvelopeBytes = 10
	minAddressBytes  = 3
)

// Parameter maps made only of parameters whose values recur across
// messages ({charset: utf-8}, {format: flowed, charset: us-ascii}...) are
// interned: every decoded part with the same parameters shares one map, so
// the cache holds one copy instead of one per part. Maps with a boundary,
// file name or other per-message value are never interned, which keeps
// the table small; it is bounded anyway.
var (
	internMu  sync.RWMutex
	internTab = map[string]map[string]string{}
)

// maxInterned bounds the number of interned maps.
const maxInterned = 1024

// zones caches the *time.Location of each zone offset met, so decoded dates
// share them instead of allocating one per message.
var zones sync.Map // int -> *time.Location

// mapOverhead approximates the memory of one small map[string]string.
const mapOverhead = 320

func mapCount(p *Part) int {
	if p == nil {
		return 0
	}
	n := 0
	if p.Params != nil {
		n++
	}
	if p.DispositionParams != nil {
		n++
	}
	for _, c := range p.Children {
		n += mapCount(c)
	}
	return n + mapCount(p.Body)
}

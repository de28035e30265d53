package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// decodeEnvelope decodes a stored envelope in either encoding and
// estimates the bytes the result holds. The strings of a binary envelope
// are substrings of s.
func decodeEnvelope(s string) (*Envelope, int64, error) {
	if s == "" {
		return nil, 0, fmt.Errorf("decode envelope: empty: %w", errCorruptMeta)
	}
	if s[0] != metaFormatV1 {
		e := new(Envelope)
		if err := json.Unmarshal([]byte(s), e); err != nil {
			return nil, 0, fmt.Errorf("decode envelope: %w", err)
		}
		var c metaCounts
		c.envelope(e)
		return e, 2*int64(len(s)) + c.bytes(), nil
	}
	d := metaDecoder{s: s, pos: 1}
	var c metaCounts
	c.addrs, c.strs = d.count(minAddressBytes), d.count(1)
	d.slabs(c)
	e := new(Envelope)
	d.envelope(e)
	if err := d.finish(); err != nil {
		return nil, 0, fmt.Errorf("decode envelope: %w", err)
	}
	c.envelopes = 1
	return e, int64(len(s)) + c.bytes(), nil
}

// decodeStructure decodes a stored structure in either encoding and
// estimates the bytes the result holds. The strings of a binary structure
// are substrings of s. A nil root (never written by the parser) decodes as
// an empty part.
func decodeStructure(s string) (*Part, int64, error) {
	if s == "" {
		return nil, 0, fmt.Errorf("decode structure: empty: %w", errCorruptMeta)
	}
	if s[0] != metaFormatV1 && s[0] != metaFormatV2 {
		p := new(Part)
		if err := json.Unmarshal([]byte(s), p); err != nil {
			return nil, 0, fmt.Errorf("decode structure: %w", err)
		}
		forgetDecodedSizes(p)
		var c metaCounts
		c.part(p)
		c.maps = mapCount(p)
		return p, 2*int64(len(s)) + c.bytes(), nil
	}
	d := metaDecoder{s: s, pos: 1}
	var c metaCounts
	c.parts, c.children, c.envelopes = d.count(minPartBytes), d.count(1), d.count(minEnvelopeBytes)
	c.addrs, c.strs = d.count(minAddressBytes), d.count(1)
	d.slabs(c)
	p := d.part(0)
	if err := d.finish(); err != nil {
		return nil, 0, fmt.Errorf("decode structure: %w", err)
	}
	if p == nil {
		p = new(Part)
	}
	if s[0] == metaFormatV1 {
		forgetDecodedSizes(p)
	}
	c.maps = d.maps
	return p, int64(len(s)) + c.bytes(), nil
}

// forgetDecodedSizes sets every DecodedSize of a structure written before
// metaFormatV2 to -1: those sizes were measured leniently, and may differ
// from what strict decoding (BINARY) gives for a damaged part.
func forgetDecodedSizes(p *Part) {
	if p == nil {
		return
	}
	p.DecodedSize = -1
	for _, c := range p.Children {
		forgetDecodedSizes(c)
	}
	forgetDecodedSizes(p.Body)
}

// metaDecoder reads one binary blob. After the first error every read
// returns a zero value and the error is reported by finish.
type metaDecoder struct {
	s   string
	pos int
	err error

	parts    []Part
	children []*Part
	envs     []Envelope
	addrs    []Address
	strs     []string
	maps     int // maps allocated (not interned)
}

func (d *metaDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at byte %d: %w", what, d.pos, errCorruptMeta)
	}
	d.pos = len(d.s)
}

func (d *metaDecoder) finish() error {
	if d.err == nil && d.pos != len(d.s) {
		d.fail("trailing data")
	}
	return d.err
}

func (d *metaDecoder) byte() byte {
	if d.pos >= len(d.s) {
		d.fail("truncated")
		return 0
	}
	c := d.s[d.pos]
	d.pos++
	return c
}

func (d *metaDecoder) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if d.pos >= len(d.s) {
			d.fail("truncated varint")
			return 0
		}
		c := d.s[d.pos]
		d.pos++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.fail("varint overflow")
	return 0
}

func (d *metaDecoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a count of items each encoded in at least minBytes bytes; it
// must fit in the bytes left, which bounds any allocation made from it.
func (d *metaDecoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.pos)/uint64(minBytes) {
		d.fail("count out of range")
		return 0
	}
	return int(n)
}

// listLen reads a list length: -1 for nil.
func (d *metaDecoder) listLen() int {
	n := d.uvarint()
	if n == 0 {
		return -1
	}
	if n-1 > uint64(len(d.s)-d.pos) {
		d.fail("list length out of range")
		return -1
	}
	return int(n - 1)
}

func (d *metaDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.pos) {
		d.fail("string length out of range")
		return ""
	}
	s := d.s[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s
}

// slabs allocates the slices the decoded values are carved from.
func (d *metaDecoder) slabs(c metaCounts) {
	if d.err != nil {
		return
	}
	if c.parts > 0 {
		d.parts = make([]Part, c.parts)
	}
	if c.children > 0 {
		d.children = make([]*Part, c.children)
	}
	if c.envelopes > 0 {
		d.envs = make([]Envelope, c.envelopes)
	}
	if c.addrs > 0 {
		d.addrs = make([]Address, c.addrs)
	}
	if c.strs > 0 {
		d.strs = make([]string, c.strs)
	}
}

// take returns the first n items of *slab (allocating when the slab is too
// short, which only a blob with wrong counts causes) with capacity n, so an
// append by a caller can never overwrite a neighbour.
func take[T any](slab *[]T, n int) []T {
	if n == 0 {
		return []T{} // empty, not nil (no allocation)
	}
	if len(*slab) < n {
		return make([]T, n)
	}
	out := (*slab)[:n:n]
	*slab = (*slab)[n:]
	return out
}

func (d *metaDecoder) strList() []string {
	n := d.listLen()
	if n < 0 {
		return nil
	}
	out := take(&d.strs, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *metaDecoder) addrList() []Address {
	n := d.listLen()
	if n < 0 {
		return nil
	}
	out := take(&d.addrs, n)
	for i := range out {
		out[i] = Address{Name: d.str(), Mailbox: d.str(), Host: d.str()}
	}
	return out
}

func (d *metaDecoder) strMap() map[string]string {
	start := d.pos
	n := d.listLen()
	if n < 0 {
		return nil
	}
	// Read the pairs as substrings first (no allocation), so that a map
	// already interned can be returned as is.
	var small [4][2]string
	var kv [][2]string
	if n <= len(small) {
		kv = small[:n]
	} else {
		kv = make([][2]string, n)
	}
	internable := n <= len(small)
	for i := range kv {
		kv[i][0], kv[i][1] = d.str(), d.str()
		internable = internable && stableParam(kv[i][0], kv[i][1])
	}
	if d.err != nil {
		return nil
	}
	if internable {
		return internMap(d.s[start:d.pos], kv)
	}
	d.maps++
	m := make(map[string]string, n)
	for _, p := range kv {
		m[p[0]] = p[1]
	}
	return m
}

// stableParam reports whether a parameter's value is one that recurs
// across messages.
func stableParam(k, v string) bool {
	if len(v) > 32 {
		return false
	}
	switch k {
	case "charset", "format", "delsp", "reply-type", "report-type", "type", "smime-type", "method", "protocol", "micalg", "differences":
		return true
	}
	return false
}

// internMap returns the interned map of the encoded parameters enc (the
// table's key) holding kv, creating it if the table has room.
func internMap(enc string, kv [][2]string) map[string]string {
	internMu.RLock()
	m, ok := internTab[enc]
	internMu.RUnlock()
	if ok {
		return m
	}
	// The interned map must not keep the blob it was decoded from alive:
	// clone every string.
	m = make(map[string]string, len(kv))
	for _, p := range kv {
		m[strings.Clone(p[0])] = strings.Clone(p[1])
	}
	internMu.Lock()
	defer internMu.Unlock()
	if old, ok := internTab[enc]; ok {
		return old
	}
	if len(internTab) < maxInterned {
		internTab[strings.Clone(enc)] = m
	}
	return m
}

func (d *metaDecoder) date() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("bad date tag")
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	off := d.varint()
	if nsec >= 1e9 || off < math.MinInt32 || off > math.MaxInt32 {
		d.fail("date out of range")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(fixedZone(int(off)))
}

func (d *metaDecoder) envelope(e *Envelope) {
	e.Date = d.date()
	e.Subject = d.str()
	e.From = d.addrList()
	e.Sender = d.addrList()
	e.ReplyTo = d.addrList()
	e.To = d.addrList()
	e.Cc = d.addrList()
	e.Bcc = d.addrList()
	e.InReplyTo = d.strList()
	e.MessageID = d.str()
}

func (d *metaDecoder) part(depth int) *Part {
	switch d.byte() {
	case 0:
		return nil
	case 1:
	default:
		d.fail("bad part tag")
		return nil
	}
	if depth > maxDecodeDepth {
		d.fail("nesting too deep")
		return nil
	}
	var p *Part
	if len(d.parts) > 0 {
		p = &d.parts[0]
		d.parts = d.parts[1:]
	} else {
		p = new(Part)
	}
	p.Type = d.str()
	p.Subtype = d.str()
	p.Params = d.strMap()
	p.ID = d.str()
	p.Description = d.str()
	p.Encoding = d.str()
	p.Size = d.varint()
	p.Lines = d.varint()
	p.MD5 = d.str()
	p.Disposition = d.str()
	p.DispositionParams = d.strMap()
	p.Language = d.strList()
	p.Location = d.str()
	if n := d.listLen(); n >= 0 {
		p.Children = take(&d.children, n)
		for i := range p.Children {
			p.Children[i] = d.part(depth + 1)
		}
	}
	switch d.byte() {
	case 0:
	case 1:
		var e *Envelope
		if len(d.envs) > 0 {
			e = &d.envs[0]
			d.envs = d.envs[1:]
		} else {
			e = new(Envelope)
		}
		d.envelope(e)
		p.Envelope = e
	default:
		d.fail("bad envelope tag")
	}
	p.Body = d.part(depth + 1)
	p.HeaderStart = d.varint()
	p.BodyStart = d.varint()
	p.End = d.varint()
	p.DecodedSize = d.varint()
	return p
}

// fixedZone returns the location of a zone offset: UTC for 0 (as a JSON
// round trip of the time gives), else a fixed zone without a name. Only
// whole-minute offsets under 100 hours (every offset a Date header can
// express) are cached, which bounds the cache.
func fixedZone(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	if off%60 != 0 || off <= -100*3600 || off >= 100*3600 {
		return time.FixedZone("", off)
	}
	if l, ok := zones.Load(off); ok {
		return l.(*time.Location)
	}
	l, _ := zones.LoadOrStore(off, time.FixedZone("", off))
	return l.(*time.Location)
}

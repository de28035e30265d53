package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// canonPart returns a copy of p with every envelope date zeroed, and the
// dates (instant and zone offset) in walk order, so that two trees can be
// compared with reflect.DeepEqual although equal times may carry different
// *time.Location values.
func canonPart(p *Part, dates *[]string) *Part {
	if p == nil {
		return nil
	}
	c := *p
	if p.Children != nil {
		c.Children = make([]*Part, len(p.Children))
		for i, ch := range p.Children {
			c.Children[i] = canonPart(ch, dates)
		}
	}
	c.Envelope = canonEnv(p.Envelope, dates)
	c.Body = canonPart(p.Body, dates)
	return &c
}

func canonEnv(e *Envelope, dates *[]string) *Envelope {
	if e == nil {
		return nil
	}
	c := *e
	*dates = append(*dates, dateKey(e.Date))
	c.Date = time.Time{}
	return &c
}

func dateKey(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	_, off := t.Zone()
	return fmt.Sprintf("%d/%d", t.UnixNano(), off)
}

// checkSameEnvelope fails unless got equals want exactly (nil and empty
// lists told apart), dates compared by instant and offset.
func checkSameEnvelope(t *testing.T, got, want *Envelope) {
	t.Helper()
	var dg, dw []string
	cg, cw := canonEnv(got, &dg), canonEnv(want, &dw)
	if !reflect.DeepEqual(cg, cw) || !reflect.DeepEqual(dg, dw) {
		t.Fatalf("envelope differs:\n got %+v %v\nwant %+v %v", cg, dg, cw, dw)
	}
}

func checkSamePart(t *testing.T, got, want *Part) {
	t.Helper()
	var dg, dw []string
	cg, cw := canonPart(got, &dg), canonPart(want, &dw)
	if !reflect.DeepEqual(cg, cw) || !reflect.DeepEqual(dg, dw) {
		gj, _ := json.Marshal(cg)
		wj, _ := json.Marshal(cw)
		t.Fatalf("structure differs:\n got %s %v\nwant %s %v", gj, dg, wj, dw)
	}
}

func roundTrip(t *testing.T, e *Envelope, p *Part) {
	t.Helper()
	eb := appendEnvelopeBlob(nil, e)
	pb := appendStructureBlob(nil, p)
	if eb[0] != metaFormatV1 || pb[0] != metaFormatV2 {
		t.Fatalf("blobs start with %#x/%#x, want the format tag", eb[0], pb[0])
	}
	ge, ecost, err := decodeEnvelope(string(eb))
	if err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	gp, pcost, err := decodeStructure(string(pb))
	if err != nil {
		t.Fatalf("decode structure: %v", err)
	}
	if ecost < int64(len(eb)) || pcost < int64(len(pb)) {
		t.Errorf("cost estimates %d/%d below blob sizes %d/%d", ecost, pcost, len(eb), len(pb))
	}
	checkSameEnvelope(t, ge, e)
	checkSamePart(t, gp, p)
	// The encoding is canonical: re-encoding the decoded value gives the
	// same bytes (map keys are written sorted).
	if eb2 := appendEnvelopeBlob(nil, ge); !bytes.Equal(eb2, eb) {
		t.Errorf("envelope re-encoding differs")
	}
	if pb2 := appendStructureBlob(nil, gp); !bytes.Equal(pb2, pb) {
		t.Errorf("structure re-encoding differs")
	}
}

func TestMetaCodecRoundTripCorpus(t *testing.T) {
	for name, raw := range readCorpus(t) {
		t.Run(name, func(t *testing.T) {
			pm := parseMessageUnsafe(normalizeCRLF(raw))
			roundTrip(t, pm.envelope, pm.structure)
		})
	}
}

func TestMetaCodecRoundTripEdgeCases(t *testing.T) {
	east := time.FixedZone("CEST", 2*3600)
	odd := time.FixedZone("", -(3*3600 + 30*60 + 7)) // not whole minutes: not cached
	full := &Envelope{
		Date:      time.Date(2024, 2, 29, 23, 59, 58, 123456789, east),
		Subject:   "Grüße \x00 \xff",
		From:      []Address{{Name: "A", Mailbox: "a", Host: "example.org"}},
		Sender:    []Address{},
		ReplyTo:   nil,
		To:        []Address{{Mailbox: "group-only"}, {Name: "", Mailbox: "b", Host: "x"}},
		Cc:        []Address{{Name: strings.Repeat("n", 300), Mailbox: "c", Host: "y"}},
		InReplyTo: []string{"x@y", "", "z@w"},
		MessageID: "id@host",
	}
	tests := []struct {
		name string
		env  *Envelope
		part *Part
	}{
		{"zero values", &Envelope{}, &Part{}},
		{"full envelope", full, &Part{Type: "text", Subtype: "plain"}},
		{"utc and odd zones", &Envelope{Date: time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)},
			&Part{Envelope: &Envelope{Date: time.Date(2001, 1, 1, 0, 0, 0, 1, odd)}, Body: &Part{}}},
		{"negative and huge numbers", &Envelope{}, &Part{Size: -1, Lines: 1 << 62, HeaderStart: -(1 << 62), BodyStart: 0, End: 1<<63 - 1, DecodedSize: -1 << 63}},
		{"nil and empty collections", &Envelope{From: []Address{}, InReplyTo: []string{}},
			&Part{Params: map[string]string{}, DispositionParams: nil, Language: []string{}, Children: []*Part{}}},
		{"nil child", &Envelope{}, &Part{Type: "multipart", Subtype: "mixed", Children: []*Part{nil, {Type: "text"}, nil}}},
		{"many minimal parts", &Envelope{}, &Part{Children: []*Part{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}}},
		{"maps", &Envelope{}, &Part{
			Params:            map[string]string{"charset": "utf-8", "format": "flowed", "boundary": "=_x", "": "empty key"},
			DispositionParams: map[string]string{"filename": "a b.pdf", "size": "12"},
		}},
		{"nested messages", full, &Part{Type: "message", Subtype: "rfc822", Envelope: full,
			Body: &Part{Type: "multipart", Subtype: "mixed", Children: []*Part{
				{Type: "message", Subtype: "rfc822", Envelope: &Envelope{Subject: "inner"}, Body: &Part{Type: "text", Language: []string{"en", "de"}}},
				{Type: "text", Subtype: "html", Params: map[string]string{"charset": "utf-8"}, MD5: "m", ID: "<i>", Description: "d", Location: "l", Disposition: "inline"},
			}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { roundTrip(t, tt.env, tt.part) })
	}
}

func TestMetaCodecNilRoots(t *testing.T) {
	e, _, err := decodeEnvelope(string(appendEnvelopeBlob(nil, nil)))
	if err != nil || e == nil || !reflect.DeepEqual(*e, Envelope{}) {
		t.Errorf("nil envelope decodes as %+v, %v; want empty envelope", e, err)
	}
	p, _, err := decodeStructure(string(appendStructureBlob(nil, nil)))
	if err != nil || p == nil || !reflect.DeepEqual(*p, Part{}) {
		t.Errorf("nil structure decodes as %+v, %v; want empty part", p, err)
	}
}

// TestMetaCodecSharing checks the allocation design: strings are
// substrings of the blob, interned parameter maps are shared and do not
// keep a blob alive, per-message maps are not shared.
func TestMetaCodecSharing(t *testing.T) {
	mk := func(boundary string) *Part {
		return &Part{Type: "multipart", Subtype: "alternative", Params: map[string]string{"boundary": boundary}, Children: []*Part{
			{Type: "text", Subtype: "plain", Params: map[string]string{"charset": "utf-8", "format": "flowed"}},
			{Type: "text", Subtype: "html", Params: map[string]string{"charset": "utf-8", "format": "flowed"}},
		}}
	}
	a, _, err := decodeStructure(string(appendStructureBlob(nil, mk("b1"))))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := decodeStructure(string(appendStructureBlob(nil, mk("b2"))))
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(a.Children[0].Params).Pointer() != reflect.ValueOf(b.Children[1].Params).Pointer() {
		t.Errorf("identical charset parameter maps are not shared")
	}
	if reflect.ValueOf(a.Params).Pointer() == reflect.ValueOf(b.Params).Pointer() || a.Params["boundary"] != "b1" || b.Params["boundary"] != "b2" {
		t.Errorf("boundary maps shared or wrong: %v %v", a.Params, b.Params)
	}
	if cap(a.Children) != len(a.Children) {
		t.Errorf("children slice has spare capacity %d > %d: an append could overwrite a neighbour", cap(a.Children), len(a.Children))
	}
}

func TestMetaCodecLegacyJSON(t *testing.T) {
	for name, raw := range readCorpus(t) {
		t.Run(name, func(t *testing.T) {
			pm := parseMessageUnsafe(normalizeCRLF(raw))
			ej, err := json.Marshal(pm.envelope)
			if err != nil {
				t.Fatal(err)
			}
			pj, err := json.Marshal(pm.structure)
			if err != nil {
				t.Fatal(err)
			}
			e, _, err := decodeEnvelope(string(ej))
			if err != nil {
				t.Fatalf("decode JSON envelope: %v", err)
			}
			p, _, err := decodeStructure(string(pj))
			if err != nil {
				t.Fatalf("decode JSON structure: %v", err)
			}
			// JSON cannot tell nil from empty for omitempty fields: compare
			// in JSON form.
			if g, _ := json.Marshal(e); !bytes.Equal(g, ej) {
				t.Errorf("envelope %s, want %s", g, ej)
			}
			if g, w := mustJSON(t, p), legacyStructureJSON(t, pm.structure); !bytes.Equal(g, w) {
				t.Errorf("structure %s, want %s", g, w)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacyStructureJSON is the JSON of p as a structure stored before
// metaFormatV2 decodes: every DecodedSize -1 (not known).
func legacyStructureJSON(t *testing.T, p *Part) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Part
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	forgetDecodedSizes(&q)
	b, err = json.Marshal(&q)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMetaCodecV1Structure checks that a structure blob written before
// metaFormatV2 (the same form under the tag metaFormatV1) decodes with
// every DecodedSize -1, and one in metaFormatV2 with the sizes it holds.
func TestMetaCodecV1Structure(t *testing.T) {
	pm := parseMessageUnsafe(normalizeCRLF(readCorpus(t)["multipart-mixed.eml"]))
	pb := appendStructureBlob(nil, pm.structure)
	known := 0
	var walk func(p *Part, v1 bool)
	walk = func(p *Part, v1 bool) {
		if p == nil {
			return
		}
		if v1 && p.DecodedSize != -1 {
			t.Errorf("V1 part %s: DecodedSize %d, want -1", p, p.DecodedSize)
		}
		if !v1 && p.DecodedSize > 0 {
			known++
		}
		for _, c := range p.Children {
			walk(c, v1)
		}
		walk(p.Body, v1)
	}
	p2, _, err := decodeStructure(string(pb))
	if err != nil {
		t.Fatal(err)
	}
	walk(p2, false)
	if known == 0 {
		t.Fatal("no part of the V2 structure has a DecodedSize")
	}
	pb[0] = metaFormatV1
	p1, _, err := decodeStructure(string(pb))
	if err != nil {
		t.Fatal(err)
	}
	walk(p1, true)
}

func TestMetaCodecCorrupt(t *testing.T) {
	pm := parseMessageUnsafe(normalizeCRLF(readCorpus(t)["multipart-mixed.eml"]))
	eb := appendEnvelopeBlob(nil, pm.envelope)
	pb := appendStructureBlob(nil, pm.structure)
	// Every proper prefix is refused, never decoded into something else.
	for n := 0; n < len(eb); n++ {
		if _, _, err := decodeEnvelope(string(eb[:n])); err == nil {
			t.Fatalf("envelope prefix of %d/%d bytes decoded", n, len(eb))
		}
	}
	for n := 0; n < len(pb); n++ {
		if _, _, err := decodeStructure(string(pb[:n])); err == nil {
			t.Fatalf("structure prefix of %d/%d bytes decoded", n, len(pb))
		}
	}
	// Deep nesting beyond what the parser produces.
	deep := []byte{metaFormatV1, 0, 0, 0, 0, 0}
	for range maxDecodeDepth + 2 {
		deep = append(deep, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // part up to Children: nil list
		deep = append(deep, 0)                                              // no envelope; Body follows
	}
	tests := []struct {
		name string
		blob string
		env  bool
	}{
		{"trailing byte", string(append(bytes.Clone(pb), 0)), false},
		{"huge count", string([]byte{metaFormatV1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}), true},
		{"huge string", string([]byte{metaFormatV1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}), true},
		{"varint overflow", string([]byte{metaFormatV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), true},
		{"bad part tag", string([]byte{metaFormatV1, 0, 0, 0, 0, 0, 7}), false},
		{"bad date tag", string([]byte{metaFormatV1, 0, 0, 9}), true},
		{"deep nesting", string(deep), false},
		{"json garbage", "{not json", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.env {
				_, _, err = decodeEnvelope(tt.blob)
			} else {
				_, _, err = decodeStructure(tt.blob)
			}
			if err == nil {
				t.Fatal("decoded without error")
			}
			if tt.blob[0] == metaFormatV1 && !errors.Is(err, errCorruptMeta) {
				t.Errorf("error %v does not wrap errCorruptMeta", err)
			}
		})
	}
}

// FuzzMetaRoundTrip parses arbitrary messages and checks that their
// envelope and structure survive the binary encoding exactly.
func FuzzMetaRoundTrip(f *testing.F) {
	for _, raw := range readCorpus(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		pm := parseMessageUnsafe(normalizeCRLF(raw))
		roundTrip(t, pm.envelope, pm.structure)
	})
}

// FuzzMetaDecode feeds arbitrary bytes to the decoders: they must not
// panic, and whatever they accept must survive a re-encoding.
func FuzzMetaDecode(f *testing.F) {
	for _, raw := range readCorpus(f) {
		pm := parseMessageUnsafe(normalizeCRLF(raw))
		f.Add(appendEnvelopeBlob(nil, pm.envelope), true)
		f.Add(appendStructureBlob(nil, pm.structure), false)
	}
	f.Fuzz(func(t *testing.T, blob []byte, env bool) {
		if len(blob) == 0 || (blob[0] != metaFormatV1 && blob[0] != metaFormatV2) {
			return // JSON is encoding/json's business
		}
		if env {
			e, _, err := decodeEnvelope(string(blob))
			if err == nil {
				e2, _, err := decodeEnvelope(string(appendEnvelopeBlob(nil, e)))
				if err != nil {
					t.Fatalf("re-encoded envelope refused: %v", err)
				}
				checkSameEnvelope(t, e2, e)
			}
			return
		}
		p, _, err := decodeStructure(string(blob))
		if err == nil {
			p2, _, err := decodeStructure(string(appendStructureBlob(nil, p)))
			if err != nil {
				t.Fatalf("re-encoded structure refused: %v", err)
			}
			checkSamePart(t, p2, p)
		}
	})
}

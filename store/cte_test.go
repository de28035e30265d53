package store

import (
	"errors"
	"testing"
)

// TestDecodedSizeIsStrictLength checks, over the golden inputs (the fuzz
// corpus, realistic messages and the encoding edge cases), that every leaf
// part's stored DecodedSize is the length DecodeTransferEncoding gives in
// DecodeStrict, the mode BINARY uses, and -1 exactly where it fails: so
// BINARY.SIZE answered from DecodedSize is len(BINARY[part]).
func TestDecodedSizeIsStrictLength(t *testing.T) {
	var leaves, undecodable int
	for name, raw := range goldenInputs(t) {
		pm := parseMessageUnsafe(normalizeCRLF(raw))
		var walk func(p *Part)
		walk = func(p *Part) {
			if p == nil {
				return
			}
			if len(p.Children) > 0 || p.Body != nil {
				for _, c := range p.Children {
					walk(c)
				}
				walk(p.Body)
				return
			}
			leaves++
			dec, err := DecodeTransferEncoding(p.Encoding, pm.raw[p.BodyStart:p.End], DecodeStrict)
			switch {
			case err != nil && !errors.Is(err, ErrUndecodable):
				t.Errorf("%s: part %s: error %v does not wrap ErrUndecodable", name, p, err)
			case err != nil && p.DecodedSize != -1:
				t.Errorf("%s: part %s (%s): DecodedSize %d, but strict decoding fails: %v", name, p, p.Encoding, p.DecodedSize, err)
			case err != nil:
				undecodable++
			case int64(len(dec)) != p.DecodedSize:
				t.Errorf("%s: part %s (%s): DecodedSize %d, strict decoding gives %d bytes", name, p, p.Encoding, p.DecodedSize, len(dec))
			}
		}
		walk(pm.structure)
	}
	if undecodable == 0 || undecodable == leaves {
		t.Errorf("%d of %d leaf parts undecodable: the corpus should hold both kinds", undecodable, leaves)
	}
	t.Logf("%d leaf parts, %d undecodable", leaves, undecodable)
}

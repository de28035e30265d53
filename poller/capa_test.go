package poller

import (
	"reflect"
	"testing"
	"time"
)

func TestParseCapa(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  capabilities
	}{
		{"empty", nil, capabilities{}},
		{"dovecot", []string{"CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS", "USER", "SASL PLAIN LOGIN"},
			capabilities{TOP: true, UIDL: true, RespCodes: true, Pipelining: true, STLS: true, User: true, SASL: []string{"PLAIN", "LOGIN"}}},
		{"login delay before auth", []string{"LOGIN-DELAY 900 USER", "EXPIRE 31 USER"},
			capabilities{LoginDelay: 900 * time.Second, HasLoginDelay: true, Expire: 31 * 24 * time.Hour, HasExpire: true}},
		{"expire never", []string{"EXPIRE NEVER", "IMPLEMENTATION Shlemazle Plotz-v302"},
			capabilities{ExpireNever: true, HasExpire: true, Implementation: "Shlemazle Plotz-v302"}},
		{"expire zero", []string{"EXPIRE 0"}, capabilities{HasExpire: true}},
		{"garbage values ignored", []string{"LOGIN-DELAY x", "EXPIRE -1", "sasl xoauth2", "  "},
			capabilities{SASL: []string{"XOAUTH2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCapa(tt.lines)
			got.Raw = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseCapa(%q) =\n%+v\nwant\n%+v", tt.lines, got, tt.want)
			}
		})
	}
	if c := parseCapa([]string{"SASL PLAIN XOAUTH2"}); !c.hasSASL("xoauth2") || c.hasSASL("LOGIN") {
		t.Errorf("hasSASL wrong for %+v", c)
	}
}

package bridge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a configuration duration, written as a string: "90s", "5m",
// "1h30m", "14d", "1d12h", or "0". The integer 0 is accepted too.
//
// A value that does not parse is kept, marked invalid, and reported by
// [Config.Validate] together with every other problem of the file.
type Duration struct {
	// Value is the parsed duration (0 when the text did not parse).
	Value time.Duration
	err   error // parse error of the value as written; reported by Validate
}

// String formats d for humans ("5m0s", "336h0m0s").
func (d Duration) String() string { return d.Value.String() }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	*d = Duration{}
	switch v := v.(type) {
	case string:
		d.Value, d.err = ParseDuration(v)
	case int64:
		if v != 0 {
			d.err = fmt.Errorf("%d has no unit (write e.g. \"90s\", \"5m\", \"14d\")", v)
		}
	default:
		d.err = fmt.Errorf("a %s is not a duration (write e.g. \"90s\", \"5m\", \"14d\")", tomlTypeName(v))
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Value.String()), nil }

// ParseDuration parses a configuration duration: Go's time.ParseDuration
// syntax, plus a leading whole or fractional number of days ("14d",
// "1.5d", "1d12h"), plus "0". Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("%q is not a duration (write e.g. \"90s\", \"5m\", \"14d\")", s)
	}
	if in == "0" {
		return 0, nil
	}
	var days time.Duration
	if i := strings.IndexByte(in, 'd'); i > 0 {
		n, err := strconv.ParseFloat(in[:i], 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q is not a duration (write e.g. \"90s\", \"5m\", \"14d\")", s)
		}
		days = time.Duration(n * float64(24*time.Hour))
		in = in[i+1:]
		if in == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(in)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write e.g. \"90s\", \"5m\", \"14d\")", s)
	}
	if d < 0 || (days > 0 && strings.HasPrefix(in, "-")) {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return days + d, nil
}

// Size is a configuration size in bytes, written as an integer (bytes) or a
// string: "1048576", "50MB", "1.5GiB", "512 KiB". KB, MB, GB, TB are powers
// of 1000; KiB, MiB, GiB, TiB powers of 1024. Units are case-insensitive.
//
// A value that does not parse is kept, marked invalid, and reported by
// [Config.Validate].
type Size struct {
	// Bytes is the parsed size (0 when the text did not parse).
	Bytes int64
	err   error
}

// String formats s in bytes.
func (s Size) String() string { return strconv.FormatInt(s.Bytes, 10) }

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	*s = Size{}
	switch v := v.(type) {
	case string:
		s.Bytes, s.err = ParseSize(v)
	case int64:
		if v < 0 {
			s.err = fmt.Errorf("%d is negative", v)
		}
		s.Bytes = v
	default:
		s.err = fmt.Errorf("a %s is not a size (write e.g. \"50MB\", \"1.5GiB\" or a number of bytes)", tomlTypeName(v))
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize parses a configuration size (see [Size]).
func ParseSize(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size (write e.g. \"50MB\", \"1.5GiB\" or a number of bytes)", s)
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, bad
	}
	n, err := strconv.ParseFloat(in[:i], 64)
	if err != nil {
		return 0, bad
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(in[i:]))]
	if !ok {
		return 0, bad
	}
	v := n * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(math.Round(v)), nil
}

// tomlTypeName names the TOML type of a decoded value for messages.
func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	case time.Time:
		return "datetime"
	default:
		return fmt.Sprintf("%T", v)
	}
}

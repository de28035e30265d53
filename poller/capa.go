package poller

import (
	"strconv"
	"strings"
	"time"
)

// capabilities is a parsed CAPA response (RFC 2449). The zero value means
// the server answered -ERR to CAPA (an RFC 1939-only server): no optional
// command is assumed.
type capabilities struct {
	// UIDL, TOP, Pipelining, User, STLS report the capabilities of the same
	// names.
	UIDL, TOP, Pipelining, User, STLS bool
	// RespCodes reports RESP-CODES (extended -ERR [CODE] replies).
	RespCodes bool
	// SASL lists the advertised SASL mechanisms, upper case.
	SASL []string
	// LoginDelay is the minimum time between logins (LOGIN-DELAY n);
	// HasLoginDelay reports whether the server announced one.
	LoginDelay    time.Duration
	HasLoginDelay bool
	// Expire is how long the server keeps retrieved messages (EXPIRE n,
	// in days); ExpireNever is EXPIRE NEVER; HasExpire reports whether the
	// server announced either. EXPIRE 0 means messages are deleted after
	// retrieval regardless of DELE.
	Expire      time.Duration
	ExpireNever bool
	HasExpire   bool
	// Implementation is the IMPLEMENTATION string, if any.
	Implementation string
	// Raw holds the capability lines as received.
	Raw []string
}

// hasSASL reports whether mech is advertised (case-insensitive).
func (c capabilities) hasSASL(mech string) bool {
	for _, m := range c.SASL {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// parseCapa parses the lines of a CAPA response (without the status line
// and the terminating ".").
func parseCapa(lines []string) capabilities {
	var c capabilities
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		c.Raw = append(c.Raw, l)
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "UIDL":
			c.UIDL = true
		case "TOP":
			c.TOP = true
		case "PIPELINING":
			c.Pipelining = true
		case "USER":
			c.User = true
		case "STLS":
			c.STLS = true
		case "RESP-CODES":
			c.RespCodes = true
		case "SASL":
			for _, m := range f[1:] {
				c.SASL = append(c.SASL, strings.ToUpper(m))
			}
		case "LOGIN-DELAY":
			// "LOGIN-DELAY 900" or, before login, "LOGIN-DELAY 900 USER".
			if len(f) > 1 {
				if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 {
					c.LoginDelay, c.HasLoginDelay = time.Duration(n)*time.Second, true
				}
			}
		case "EXPIRE":
			if len(f) > 1 {
				if strings.EqualFold(f[1], "NEVER") {
					c.ExpireNever, c.HasExpire = true, true
				} else if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 {
					c.Expire, c.HasExpire = time.Duration(n)*24*time.Hour, true
				}
			}
		case "IMPLEMENTATION":
			c.Implementation = strings.TrimSpace(l[len(f[0]):])
		}
	}
	return c
}

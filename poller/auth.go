package poller

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// checkCredential refuses values that could inject protocol lines.
func checkCredential(what, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s: %w", what, ErrBadCredentials)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%s contains CR, LF or NUL: %w", what, ErrBadCredentials)
	}
	return nil
}

// secretForms lists the strings that would reveal the secret if a server
// echoed them: the secret itself and the SASL initial responses.
func secretForms(user, secret string) []string {
	forms := []string{
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + secret)),
		xoauth2Response(user, secret),
	}
	if len(secret) >= 4 {
		forms = append(forms, secret)
	}
	return forms
}

func xoauth2Response(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

// apopStamp matches the RFC 1939 timestamp in a greeting: <...@...> or any
// <...> msg-id.
var apopStamp = regexp.MustCompile(`<[^<>\s]+>`)

// login authenticates with the account's mechanism.
func (s *session) login(ctx context.Context, secret string, deadline time.Time) error {
	a := s.acct
	expect := func() { s.mc.expect(maxStatusLine+4096, maxStatusLine, deadline, ErrProtocol) }
	cmd := func(line string) error {
		expect()
		if err := s.pc.Send(line); err != nil {
			return s.fail(ctx, "login", err)
		}
		if _, err := s.pc.ReadOne(); err != nil {
			return err
		}
		return nil
	}
	switch a.Auth {
	case "", "user":
		if err := cmd("USER " + a.Username); err != nil {
			return s.loginErr(ctx, err)
		}
		if err := cmd("PASS " + secret); err != nil {
			return s.loginErr(ctx, err)
		}
		return nil
	case "apop":
		stamp := apopStamp.FindString(s.greeting)
		if stamp == "" {
			return opErr(a, "login", fmt.Errorf("auth = apop but the greeting has no timestamp: %w", ErrBadCredentials))
		}
		sum := md5.Sum([]byte(stamp + secret))
		if err := cmd("APOP " + a.Username + " " + hex.EncodeToString(sum[:])); err != nil {
			return s.loginErr(ctx, err)
		}
		return nil
	case "plain":
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + a.Username + "\x00" + secret))
		err := cmd("AUTH PLAIN " + ir)
		if _, cont := continuation(err); cont {
			// A server that ignores the initial response asks again.
			err = cmd(ir)
		}
		if _, cont := continuation(err); cont {
			err = cmd("*")
		}
		if err != nil {
			return s.loginErr(ctx, err)
		}
		return nil
	case "xoauth2":
		return s.xoauth2(ctx, cmd, xoauth2Response(a.Username, secret))
	}
	return opErr(a, "login", fmt.Errorf("unknown auth mechanism %q (want user, apop, plain or xoauth2): %w", a.Auth, ErrBadConfig))
}

// xoauth2 sends the bearer token as an initial response; if the server
// refuses that form without saying the credentials are wrong, it retries
// with the two-step form (AUTH XOAUTH2, "+", token) that Microsoft 365
// requires. A "+ <base64 JSON>" error challenge is answered with an empty
// line, after which the server sends its final -ERR.
func (s *session) xoauth2(ctx context.Context, cmd func(string) error, ir string) error {
	finish := func(err error) error {
		if _, cont := continuation(err); cont {
			err = cmd("")
			if _, again := continuation(err); again {
				err = fmt.Errorf("unknown response: server sent a second XOAUTH2 challenge")
			}
		}
		if err != nil {
			return s.loginErr(ctx, err)
		}
		return nil
	}
	err := cmd("AUTH XOAUTH2 " + ir)
	if err == nil {
		return nil
	}
	if _, cont := continuation(err); cont {
		return finish(err)
	}
	reply, isReply := replyText(err)
	if !isReply || s.mc.err != nil {
		return s.loginErr(ctx, err)
	}
	switch respCode(reply) {
	case "AUTH", "IN-USE", "LOGIN-DELAY":
		return s.loginErr(ctx, err)
	}
	if strings.HasPrefix(respCode(reply), "SYS/") {
		return s.loginErr(ctx, err)
	}
	s.log.Debug("XOAUTH2 initial response refused; trying the two-step form", "reply", s.scrub(reply))
	err = cmd("AUTH XOAUTH2")
	if _, cont := continuation(err); !cont {
		if err == nil {
			err = fmt.Errorf("unknown response: +OK to AUTH XOAUTH2 without credentials")
		}
		return s.loginErr(ctx, err)
	}
	return finish(cmd(ir))
}

// loginErr wraps a login failure; an error already wrapped passes through.
func (s *session) loginErr(ctx context.Context, err error) error {
	return s.fail(ctx, "login", err)
}

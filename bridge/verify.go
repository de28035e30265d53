package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Repair opens the store for writing (serve must be stopped) and
	// repairs what it can: damaged search texts are rebuilt from the
	// intact bytes; damaged messages whose upstream copy still exists
	// (the POP ledger knows the account, the UIDL and the SHA-256 of the
	// whole message) are fetched again and replaced once their digest
	// matches; the others are replaced by a notice saying what was lost
	// and moved to each owner's Damaged mailbox. Without Repair the store
	// is opened read-only, which works beside a running serve.
	Repair bool
	// Progress, when not nil, is called with the messages checked so far.
	Progress func(done int)
}

// RepairAction is what Verify did about one damaged message.
type RepairAction struct {
	Message store.MessageID
	// Entries are where the message is filed after the repair.
	Entries []store.MailboxEntry
	// Done says what was done ("" when nothing could be).
	Done string
	Err  error
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	// Report is what the check found (before any repair).
	Report  store.VerifyReport
	Repairs []RepairAction
	// After is the check run again after repairs (Repair only).
	After *store.VerifyReport
}

// OK reports whether the store is sound: nothing found, or everything
// found repaired.
func (r *VerifyResult) OK() bool {
	if r.After != nil {
		return r.After.OK()
	}
	return r.Report.OK()
}

// Verify checks the store of cfg (see store.Store.Verify) and, with
// opts.Repair, repairs it. cfg must have passed Validate.
func Verify(ctx context.Context, cfg *Config, logger *slog.Logger, opts VerifyOptions) (*VerifyResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{readOnly: !opts.Repair})
	if err != nil {
		if _, pid, ok := store.LockHolder(err); ok && opts.Repair {
			return nil, fmt.Errorf("verify -repair needs the store to itself: stop popbridge serve (pid %d) first, or run verify without -repair: %w", pid, err)
		}
		return nil, err
	}
	defer st.Close()
	rep, err := st.Verify(ctx, opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	res := &VerifyResult{Report: rep}
	if !opts.Repair || len(rep.Damaged) == 0 {
		return res, nil
	}
	res.Repairs = repair(ctx, st, cfg, logger, rep.Damaged)
	after, err := st.Verify(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("verify after repair: %w", err)
	}
	res.After = &after
	return res, nil
}

// repair repairs each damaged message: texts rebuilt, bytes fetched again,
// or a notice in its place and the message moved to Damaged.
func repair(ctx context.Context, st Backend, cfg *Config, logger *slog.Logger, damaged []store.DamagedMessage) []RepairAction {
	acts := make([]RepairAction, len(damaged))
	why := make([]string, len(damaged))
	// Texts only: the bytes are intact.
	for i, d := range damaged {
		acts[i] = RepairAction{Message: d.Message, Entries: d.Entries}
		if d.Bytes {
			continue
		}
		raw, err := st.RawBytes(ctx, d.Message)
		if err == nil {
			err = st.ReplaceMessage(ctx, d.Message, raw)
		}
		if err != nil {
			acts[i].Err = err
			continue
		}
		acts[i].Done = "search texts rebuilt from the intact message"
	}
	// Bytes: ask each upstream the ledger names for its copy.
	type ref struct {
		idx  int
		want poller.RefetchWant
	}
	byAccount := map[string][]ref{}
	for i, d := range damaged {
		if !d.Bytes {
			continue
		}
		why[i] = "no upstream account holds a copy (the ledger has no record of it)"
		for _, o := range d.Origins {
			if _, ok := cfg.Account(o.Account); !ok {
				why[i] = fmt.Sprintf("account %q is no longer configured", o.Account)
				continue
			}
			byAccount[o.Account] = append(byAccount[o.Account], ref{i, poller.RefetchWant{UIDL: o.UIDL, Digest: o.Digest}})
		}
	}
	p := poller.New(poller.Options{Logger: logger.With(LogKeyComponent, "poller")})
	for _, a := range cfg.Accounts {
		refs := byAccount[a.Name]
		if len(refs) == 0 {
			continue
		}
		var wants []poller.RefetchWant
		for _, r := range refs {
			if acts[r.idx].Done == "" {
				wants = append(wants, r.want)
			}
		}
		_, err := p.Refetch(ctx, cfg.pollerAccount(a), wants, func(w poller.RefetchWant, raw []byte) error {
			for _, r := range refs {
				if r.want != w || acts[r.idx].Done != "" {
					continue
				}
				if err := st.ReplaceMessage(ctx, damaged[r.idx].Message, raw); err != nil {
					return err
				}
				acts[r.idx].Done = fmt.Sprintf("fetched again from account %q (UIDL %q, SHA-256 verified)", a.Name, w.UIDL)
			}
			return nil
		})
		for _, r := range refs {
			if acts[r.idx].Done != "" {
				continue
			}
			if err != nil {
				why[r.idx] = fmt.Sprintf("fetching it again from account %q failed: %v", a.Name, err)
			} else {
				why[r.idx] = fmt.Sprintf("account %q no longer has it (UIDL %q with the same SHA-256)", a.Name, r.want.UIDL)
			}
		}
	}
	// What is left is lost: a notice in its place, moved to Damaged.
	for i, d := range damaged {
		if acts[i].Done != "" || !d.Bytes {
			continue
		}
		if err := st.ReplaceMessage(ctx, d.Message, store.DamageNotice(d, why[i])); err != nil {
			acts[i].Err = errors.Join(acts[i].Err, err)
			continue
		}
		var moved []string
		acts[i].Entries = nil
		for _, e := range d.Entries {
			uid, err := st.Quarantine(ctx, e.UserID, e.MailboxID, e.UID)
			if err != nil {
				acts[i].Err = errors.Join(acts[i].Err, err)
				acts[i].Entries = append(acts[i].Entries, e)
				continue
			}
			moved = append(moved, fmt.Sprintf("%s UID %d", e.Mailbox, e.UID))
			acts[i].Entries = append(acts[i].Entries, store.MailboxEntry{User: e.User, UserID: e.UserID, Mailbox: store.DamagedMailbox, UID: uid})
		}
		acts[i].Done = "not recoverable (" + why[i] + "): replaced by a notice"
		if len(moved) > 0 {
			acts[i].Done += " and moved to " + store.DamagedMailbox + " from " + strings.Join(moved, ", ")
		}
	}
	return acts
}

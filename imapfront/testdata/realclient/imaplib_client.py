#!/usr/bin/env python3
"""Drive a popbridge IMAP server with Python's imaplib, the client many
scripts and tools use, and check what it answers.

Run by imapfront's realclient_test.go against a server whose INBOX holds the
three seed messages the test stores (in this order):

  1. From Alice, Subject "First message", text/plain, no flags
  2. From Bob, Subject "Zweite Nachricht" (RFC 2047 encoded), multipart/alternative
     whose text/plain part says "Größe" in quoted-printable, \\Seen
  3. From Carol, Subject "Third", text/plain, \\Flagged

Usage: imaplib_client.py HOST PORT USER PASSWORD

Prints one JSON object on stdout with what it observed; exits 0 when every
check passed, 1 (with {"error": ...} in the JSON and the reason on stderr)
when one failed.
"""

import email.header
import hashlib
import imaplib
import json
import re
import sys
import time

OUT = {}


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def ok(resp, what):
    typ, data = resp
    check(typ == "OK", "%s: got %s %r" % (what, typ, data))
    return data


def fetch_items(data):
    """Split imaplib FETCH data into (prefix bytes, literal bytes or None)."""
    items = []
    for part in data:
        if isinstance(part, tuple):
            items.append((part[0], part[1]))
        elif part not in (b")", None):
            items.append((part, None))
    return items


def parse_flags(b, keep_recent=False):
    """The flags of a FETCH response, sorted; without \\Recent (which
    says which session saw a message first) unless keep_recent."""
    m = re.search(rb"FLAGS \(([^)]*)\)", b)
    check(m is not None, "no FLAGS in %r" % b)
    return sorted(f for f in m.group(1).decode().split() if keep_recent or f != "\\Recent")


def parse_uid(b):
    m = re.search(rb"UID (\d+)", b)
    check(m is not None, "no UID in %r" % b)
    return int(m.group(1))


def decode_words(s):
    return str(email.header.make_header(email.header.decode_header(s)))


def untagged(M, name):
    """Pop and return the untagged responses named name (e.g. EXPUNGE)."""
    typ, data = M.response(name)
    return [d for d in data if d is not None]


def search(M, *criteria, uid=False):
    """SEARCH (or UID SEARCH) with criteria; returns the numbers, sorted.
    Set M.literal first to send a literal as the last argument."""
    if uid:
        data = ok(M.uid("SEARCH", *criteria), "UID SEARCH %s" % (criteria,))
    else:
        data = ok(M.search(None, *criteria), "SEARCH %s" % (criteria,))
    return sorted(int(x) for x in b" ".join(d for d in data if d).split())


def run(host, port, user, password):
    M = imaplib.IMAP4(host, port)
    caps = [c.upper() for c in M.capabilities]
    check("IMAP4REV1" in caps, "IMAP4rev1 not advertised before login: %s" % caps)
    ok(M.login(user, password), "LOGIN")
    caps = [c.upper() for c in ok(M.capability(), "CAPABILITY")[0].decode().split()]
    OUT["caps"] = caps
    for want in ("IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"):
        check(want in caps, "%s not advertised after login: %s" % (want, caps))

    # LIST: every default mailbox, special-use attributes, INBOX any case.
    names, attrs = [], {}
    for line in ok(M.list('""', "*"), "LIST"):
        m = re.match(rb'\(([^)]*)\) (?:"(.)"|NIL) (.*)$', line)
        check(m is not None, "unparseable LIST line %r" % line)
        name = m.group(3).decode()
        if name.startswith('"'):
            name = name[1:-1]
        names.append(name)
        attrs[name] = m.group(1).decode().split()
        check(m.group(2) in (b"/", None), "delimiter %r" % m.group(2))
    OUT["list"] = sorted(names)
    for want in ("INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"):
        check(want in names, "LIST lacks %s: %s" % (want, names))
    check("\\Sent" in attrs["Sent"], "Sent lacks \\Sent: %s" % attrs["Sent"])
    check("\\Trash" in attrs["Trash"], "Trash lacks \\Trash: %s" % attrs["Trash"])
    lower = ok(M.list('""', "inbox"), "LIST inbox")
    check(len(lower) == 1 and lower[0] is not None and b"INBOX" in lower[0],
          "LIST \"\" inbox should find INBOX, got %r" % lower)

    # STATUS, SELECT.
    st = ok(M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"), "STATUS")[0]
    OUT["status"] = st.decode()
    check(re.search(rb"MESSAGES 3\b", st) and re.search(rb"UNSEEN 2\b", st), "STATUS INBOX: %r" % st)
    exists = int(ok(M.select("INBOX"), "SELECT INBOX")[0])
    OUT["inbox_exists"] = exists
    check(exists == 3, "SELECT INBOX: %d messages, want 3" % exists)

    # FETCH: UID/FLAGS/size of all, BODY.PEEK[], ENVELOPE, BODYSTRUCTURE.
    uids, flags, sizes = [], {}, {}
    for prefix, _ in fetch_items(ok(M.fetch("1:*", "(UID FLAGS RFC822.SIZE)"), "FETCH 1:*")):
        uid = parse_uid(prefix)
        uids.append(uid)
        flags[uid] = parse_flags(prefix)
        sizes[uid] = int(re.search(rb"RFC822\.SIZE (\d+)", prefix).group(1))
    OUT["uids"] = uids
    check(len(uids) == 3 and uids == sorted(uids), "FETCH 1:* UIDs %s" % uids)
    check(flags[uids[0]] == [] and flags[uids[1]] == ["\\Seen"] and flags[uids[2]] == ["\\Flagged"],
          "initial flags %s" % flags)

    items = fetch_items(ok(M.fetch("1", "(BODY.PEEK[])"), "FETCH BODY.PEEK[]"))
    body = [lit for _, lit in items if lit is not None][0]
    OUT["body1_sha256"] = hashlib.sha256(body).hexdigest()
    OUT["body1_size"] = len(body)
    check(len(body) == sizes[uids[0]], "BODY[] is %d bytes, RFC822.SIZE %d" % (len(body), sizes[uids[0]]))
    f1 = parse_flags(fetch_items(ok(M.fetch("1", "(FLAGS)"), "FETCH FLAGS"))[0][0])
    check("\\Seen" not in f1, "BODY.PEEK[] set \\Seen: %s" % f1)

    env = fetch_items(ok(M.fetch("2", "(ENVELOPE)"), "FETCH ENVELOPE"))
    env_raw = b"".join(p + (l or b"") for p, l in env).decode("utf-8", "replace")
    m = re.search(r'ENVELOPE \("[^"]*" (?:"((?:[^"\\]|\\.)*)"|\{\d+\}(.*?))\s', env_raw)
    check(m is not None, "no subject in ENVELOPE %r" % env_raw)
    OUT["envelope2_subject"] = decode_words(m.group(1) or m.group(2) or "")
    check(OUT["envelope2_subject"] == "Zweite Nachricht", "ENVELOPE subject %r" % OUT["envelope2_subject"])
    check("bob@example.org" in env_raw.lower().replace('" "', "@").replace('"', "") or
          ('"bob" "example.org"' in env_raw.lower()), "ENVELOPE from %r" % env_raw)

    bs = fetch_items(ok(M.fetch("2", "(BODYSTRUCTURE)"), "FETCH BODYSTRUCTURE"))
    bs_raw = b"".join(p + (l or b"") for p, l in bs).decode("utf-8", "replace")
    OUT["bodystructure2"] = bs_raw
    check('"ALTERNATIVE"' in bs_raw.upper() and '"HTML"' in bs_raw.upper(), "BODYSTRUCTURE %r" % bs_raw)

    # Non-peek BODY[TEXT] sets \Seen.
    ok(M.fetch("3", "(BODY[TEXT])"), "FETCH BODY[TEXT]")
    f3 = parse_flags(fetch_items(ok(M.fetch("3", "(FLAGS)"), "FETCH FLAGS 3"))[0][0])
    check("\\Seen" in f3 and "\\Flagged" in f3, "after BODY[TEXT] flags %s" % f3)

    # STORE: add, remove, replace, keywords, silent, by UID.
    r = ok(M.store("1", "+FLAGS", "(\\Flagged $Work)"), "STORE +FLAGS")
    check(r and r[0] and set(parse_flags(r[0])) == {"\\Flagged", "$Work"}, "STORE +FLAGS answered %r" % r)
    r = ok(M.uid("STORE", str(uids[1]), "-FLAGS", "(\\Seen)"), "UID STORE -FLAGS")
    check(r and r[0] and parse_flags(r[0]) == [] and parse_uid(r[0]) == uids[1], "UID STORE -FLAGS answered %r" % r)
    r = ok(M.store("2", "FLAGS.SILENT", "(\\Answered)"), "STORE FLAGS.SILENT")
    check(r == [None] or r == [], "STORE .SILENT answered %r" % r)
    f2 = parse_flags(fetch_items(ok(M.fetch("2", "(FLAGS)"), "FETCH FLAGS 2"))[0][0])
    check(f2 == ["\\Answered"], "after FLAGS.SILENT flags %s" % f2)

    # SEARCH over flags, headers (encoded words decoded), body and text.
    OUT["search"] = {
        "from_alice": search(M, "FROM", "alice"),
        "subject_zweite": search(M, "SUBJECT", "zweite"),
        "text_third": search(M, "TEXT", '"THIRD ONE"'),
        "body_hello": search(M, "BODY", "hello"),
        "flagged": search(M, "FLAGGED"),
        "unseen": search(M, "UNSEEN"),
        "keyword": search(M, "KEYWORD", "$Work"),
        "or_not": search(M, "OR", "ANSWERED", "NOT", "FLAGGED"),
        "uid_all": search(M, "ALL", uid=True),
        "uid_range": search(M, "UID", "%d:*" % uids[1], uid=True),
        "header": search(M, "HEADER", "Message-ID", "popbridge.test"),
        "larger": search(M, "LARGER", str(sizes[uids[0]])),
        "senton": search(M, "SENTON", "1-May-2023"),
        "sentbefore": search(M, "SENTBEFORE", "1-May-2023"),
        "since": search(M, "SINCE", "1-Apr-2023"),
        "before": search(M, "BEFORE", "1-Apr-2023"),
        "nested": search(M, "(OR FROM alice FROM carol)", "NOT", "DELETED"),
        "seq_star": search(M, "2:*", "NOT", "SEEN"),
    }
    # SEARCH CHARSET UTF-8 with a non-ASCII literal, matched case-insensitively
    # in a quoted-printable body.
    M.literal = "GRÖßE".encode("utf-8")
    OUT["search"]["charset_body"] = search(M, "CHARSET", "UTF-8", "BODY")
    s = OUT["search"]
    check(s["from_alice"] == [1], "SEARCH FROM alice %s" % s["from_alice"])
    check(s["subject_zweite"] == [2], "SEARCH SUBJECT zweite %s" % s["subject_zweite"])
    check(s["text_third"] == [3], "SEARCH TEXT \"THIRD ONE\" %s" % s["text_third"])
    check(s["body_hello"] == [1], "SEARCH BODY hello %s" % s["body_hello"])
    check(s["flagged"] == [1, 3], "SEARCH FLAGGED %s" % s["flagged"])
    check(s["unseen"] == [1, 2], "SEARCH UNSEEN %s" % s["unseen"])
    check(s["keyword"] == [1], "SEARCH KEYWORD %s" % s["keyword"])
    check(s["or_not"] == [2], "SEARCH OR ANSWERED NOT FLAGGED %s" % s["or_not"])
    check(s["uid_all"] == uids, "UID SEARCH ALL %s" % s["uid_all"])
    check(s["uid_range"] == uids[1:], "UID SEARCH UID n:* %s" % s["uid_range"])
    check(s["header"] == [1, 2, 3], "SEARCH HEADER Message-ID %s" % s["header"])
    larger = [i + 1 for i, u in enumerate(uids) if sizes[u] > sizes[uids[0]]]
    check(s["larger"] == larger, "SEARCH LARGER %d: %s, want %s" % (sizes[uids[0]], s["larger"], larger))
    check(s["senton"] == [1, 2, 3] and s["sentbefore"] == [], "SEARCH SENTON/SENTBEFORE %s %s" % (s["senton"], s["sentbefore"]))
    check(s["since"] == [1, 2, 3] and s["before"] == [], "SEARCH SINCE/BEFORE %s %s" % (s["since"], s["before"]))
    check(s["nested"] == [1, 3], "SEARCH (OR FROM alice FROM carol) NOT DELETED %s" % s["nested"])
    check(s["seq_star"] == [2], "SEARCH 2:* NOT SEEN %s" % s["seq_star"])
    check(s["charset_body"] == [2], "SEARCH CHARSET UTF-8 BODY GRÖßE %s" % s["charset_body"])

    # COPY (COPYUID) and MOVE.
    typ, data = M.copy("1", "Archive")
    check(typ == "OK", "COPY: %s %r" % (typ, data))
    copyuid = untagged(M, "COPYUID")
    OUT["copy_response"] = [d.decode() if isinstance(d, bytes) else str(d) for d in data]
    check(any(b"COPYUID" in d for d in data if isinstance(d, bytes)) or copyuid,
          "COPY without COPYUID: %r" % data)
    typ, data = M.uid("MOVE", str(uids[2]), "Archive")
    check(typ == "OK", "UID MOVE: %s %r" % (typ, data))
    expunged = untagged(M, "EXPUNGE")
    OUT["move_expunged"] = [int(x) for x in expunged]
    check(OUT["move_expunged"] == [3], "UID MOVE expunged %s" % OUT["move_expunged"])

    # APPEND with flags and internal date (APPENDUID).
    msg = (b"From: Dave <dave@example.net>\r\nTo: alice@example.com\r\n"
           b"Subject: Appended by imaplib\r\nDate: Wed, 01 Mar 2023 10:00:00 +0000\r\n\r\n"
           b"appended body line\r\n")
    typ, data = M.append("INBOX", "(\\Seen $Appended)", imaplib.Time2Internaldate(1677664800), msg)
    check(typ == "OK", "APPEND: %s %r" % (typ, data))
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0] or b"")
    check(m is not None, "APPEND without APPENDUID: %r" % data)
    OUT["append_uid"] = int(m.group(2))
    ok(M.noop(), "NOOP")
    r = fetch_items(ok(M.uid("FETCH", str(OUT["append_uid"]), "(FLAGS INTERNALDATE RFC822.SIZE)"), "UID FETCH appended"))
    check(r, "appended message not fetchable")
    # \Recent too: the message was appended to the mailbox this session has
    # selected (IMAP4rev1, RFC 3501 section 2.3.2).
    check(set(parse_flags(r[0][0], keep_recent=True)) == {"\\Recent", "\\Seen", "$Appended"}, "appended flags %r" % r[0][0])
    # date-day-fixed: " 1-Mar-2023" or "01-Mar-2023" (RFC 3501 section 9).
    check(re.search(rb'INTERNALDATE "( 1|01)-Mar-2023 \d\d:\d\d:\d\d [+-]\d{4}"', r[0][0]),
          "appended INTERNALDATE %r" % r[0][0])
    check(re.search(rb"RFC822\.SIZE %d\b" % len(msg), r[0][0]), "appended size %r" % r[0][0])
    check(search(M, "SUBJECT", "appended", uid=True) == [OUT["append_uid"]], "appended message not searchable")

    # EXPUNGE: message 1 (Alice) goes, the others shift down.
    ok(M.store("1", "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
    typ, data = M.expunge()
    check(typ == "OK", "EXPUNGE: %s %r" % (typ, data))
    OUT["expunged"] = [int(x) for x in data if x is not None]
    check(OUT["expunged"] == [1], "EXPUNGE reported %s" % OUT["expunged"])
    final = []
    for prefix, _ in fetch_items(ok(M.fetch("1:*", "(UID FLAGS)"), "FETCH after EXPUNGE")):
        final.append(parse_uid(prefix))
    OUT["final_inbox_uids"] = final
    check(final == [uids[1], OUT["append_uid"]], "INBOX after EXPUNGE %s" % final)

    # The other mailbox: EXAMINE is read-only.
    typ, data = M.select("Archive", readonly=True)
    check(typ == "OK" and int(data[0]) == 2, "EXAMINE Archive: %s %r" % (typ, data))
    archived = {}
    for prefix, _ in fetch_items(ok(M.fetch("1:*", "(UID FLAGS)"), "FETCH Archive")):
        archived[parse_uid(prefix)] = parse_flags(prefix, keep_recent=True)
    OUT["archive_flags"] = [archived[k] for k in sorted(archived)]
    # Copied in and never selected: EXAMINE shows them as \Recent.
    check(OUT["archive_flags"] == [sorted(["\\Flagged", "$Work", "\\Recent"]), sorted(["\\Flagged", "\\Seen", "\\Recent"])],
          "Archive flags %s" % OUT["archive_flags"])
    typ, data = M.store("1", "+FLAGS", "(\\Deleted)")
    check(typ == "NO", "STORE in EXAMINE answered %s %r, want NO" % (typ, data))
    ok(M.close(), "CLOSE")

    typ, data = M.logout()
    check(typ == "BYE", "LOGOUT: %s %r" % (typ, data))


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    start = time.monotonic()
    try:
        run(host, port, user, password)
    except (CheckFailed, imaplib.IMAP4.error, OSError) as e:
        OUT["error"] = "%s: %s" % (type(e).__name__, e)
        print(json.dumps(OUT, indent=1))
        print("imaplib_client: FAILED: %s" % OUT["error"], file=sys.stderr)
        return 1
    OUT["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(OUT, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

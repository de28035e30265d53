#!/bin/bash
# Sets up what docs/bench/pg-body-rounds.sh measures, from nothing: the shared benchmark's corpus (10,000
# messages, seed 1) in a private Dovecot (POP3 127.0.0.1:27110, IMAP 127.0.0.1:27143, user bench/benchpass),
# a private PostgreSQL (docs/bench/pg-start.sh, 127.0.0.1:27432), imapbench, and two popbridge configs whose
# only account is that Dovecot: $R/pg (backend postgres, IMAP 127.0.0.1:27995) and $R/sqlite (IMAP
# 127.0.0.1:27993), each filled by one `popbridge poll`, the PostgreSQL one indexed by a serve and
# VACUUM ANALYZEd.   usage: BENCH=/path/to/shared/bench pg-body-setup.sh BIN [PGSETTING=VALUE ...]
set -euo pipefail
BIN=$(realpath "$1"); shift
BENCH=${BENCH:?BENCH: the shared bench directory}
R=${R:-/tmp/wt-pgbody-run}; PGDIR=${PGDIR:-/tmp/wt-pgbody-pg}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$R"
[ -x "$R/imapbench" ] || (cd "$BENCH/imapbench" && go build -o "$R/imapbench" .)
corpus=$R/corpus/seed1-n10000/Maildir
[ -d "$corpus" ] || python3 "$BENCH/corpus.py" "$corpus" -n 10000 --seed 1 >/dev/null
BENCH_RUN=$R POP_PORT=27110 IMAP_PORT=27143 "$BENCH/dovecot/start.sh" >/dev/null 2>"$R/dovecot-start.err" </dev/null   # the daemon keeps no pipe of the caller open
md=$R/mail/bench/Maildir
if [ ! -d "$md" ]; then cp -al "$corpus" "$md"; chown -R nobody:nogroup "$R/mail/bench"; fi
DSN=$(bash "$here/pg-start.sh" "$PGDIR" 27432 benchpg "$@")
hash=$(echo benchpass | "$BIN" hash-password | tail -1)
for kind in pg sqlite; do
  port=27993; store=""
  if [ $kind = pg ]; then port=27995; store=$'[store]\nbackend = "postgres"\ndsn = "'$DSN$'"\nnode_name = "bench"\n'; fi
  mkdir -p "$R/$kind"
  cat >"$R/$kind/popbridge.toml" <<CONF
data_dir = "$R/$kind/data"
$store
[imap]
listen = "127.0.0.1:$port"
allow_plaintext_auth = true

[http]
listen = "127.0.0.1:$((port + 1))"

[[user]]
name = "bench"
password_hash = "$hash"

[[account]]
name = "dovecot-bench"
user = "bench"
host = "127.0.0.1"
port = 27110
tls = "none"
username = "bench"
password = "benchpass"
auth = "user"
folder = "INBOX"
leave_on_server = true
delete_after = "0"
CONF
  chmod 600 "$R/$kind/popbridge.toml"
  "$BIN" poll -config "$R/$kind/popbridge.toml"
done
# Index the PostgreSQL store (a serve's background indexer), then VACUUM ANALYZE.
"$BIN" serve -config "$R/pg/popbridge.toml" >"$R/setup-serve.log" 2>&1 & sp=$!
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
for _ in $(seq 600); do
  n=$(PGPASSWORD=benchpg "$pgbin/psql" -h 127.0.0.1 -p 27432 -U popbridge -d popbridge -qAtc "SELECT count(*) FROM messages WHERE envelope IS NULL")
  [ "$n" = 0 ] && break; sleep 1
done
kill $sp; wait $sp || true
PGPASSWORD=benchpg "$pgbin/psql" -h 127.0.0.1 -p 27432 -U popbridge -d popbridge -qc "VACUUM ANALYZE"
echo "ready: R=$R, $(ls "$md/cur" "$md/new" 2>/dev/null | wc -l) messages upstream"

#!/bin/bash
# Same-round body fetch rounds behind docs/BENCHMARKS.md "Body fetch (FETCH 1:* BODY.PEEK[])" under "PostgreSQL
# backend" (paths and ports of that run). usage: pg-body-rounds.sh BIN LABEL FIRST LAST   (appends to $OUT)
# Per round: a fresh `popbridge serve` on PostgreSQL, its first rawbody, then Dovecot's; a fresh serve, its first
# body, Dovecot's; then warm on that serve: rawbody, Dovecot's, body, Dovecot's; then a warm rawbody of popbridge
# on SQLite (one serve for all rounds, warmed once). CPU seconds and minor page faults: /proc/PID/stat of the
# serve around each run; PostgreSQL's: its live processes plus the postmaster's reaped children.
R=${R:-/tmp/wt-pgbody-run}; BIN=$1; LABEL=$2; OUT=${OUT:-$R/body-rounds.txt}
PGD=${PGD:-/tmp/wt-pgbody-pg/data}
PG_ADDR=127.0.0.1:27995 SQ_ADDR=127.0.0.1:27993 DC_ADDR=127.0.0.1:27143
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return; sleep 0.1; done; }
start() { $BIN serve -config $R/pg/popbridge.toml >$R/serve.log 2>&1 & SP=$!; wait_port $PG_ADDR; sleep ${SETTLE:-3}; }
stopserve() { kill $SP; wait $SP; }
pstat() { local s; s=$(cat /proc/$1/stat); s=${s##*) }; set -- $s; echo "$(( ${12} + ${13} )) $8"; }
pgstat() { # CPU ticks and minor faults of PostgreSQL
  local pm t=0 f=0 p s; pm=$(head -1 $PGD/postmaster.pid)
  for p in $pm $(pgrep -P $pm); do
    s=$(cat /proc/$p/stat 2>/dev/null) || continue; s=${s##*) }; set -- $s
    t=$((t + ${12} + ${13})); f=$((f + $8)); [ $p = $pm ] && { t=$((t + ${14} + ${15})); f=$((f + $9)); }
  done; echo "$t $f"; }
bench() { $R/imapbench -addr $1 -user bench -pass benchpass -w $2 -runs 1 | grep -o '"total_s":[0-9.]*' | cut -d: -f2; }
run() { # target workload tag
  local l=$(cut -d' ' -f1 /proc/loadavg) t
  case $1 in
  dovecot) t=$(bench $DC_ADDR $2); echo "$LABEL r$r $3 $2 dovecot $t load $l" >>$OUT ;;
  sqlite)
    local a=($(pstat $SQ)); t=$(bench $SQ_ADDR $2); local b=($(pstat $SQ))
    echo "$LABEL r$r $3 $2 sqlite $t popbridge $(echo "scale=2; (${b[0]}-${a[0]})/100" | bc) flt $((b[1]-a[1])) load $l" >>$OUT ;;
  pg)
    local a=($(pstat $SP)) p=($(pgstat)); t=$(bench $PG_ADDR $2); local b=($(pstat $SP)) q=($(pgstat))
    local rss=$(grep VmRSS /proc/$SP/status | awk '{print $2}')
    echo "$LABEL r$r $3 $2 pg $t popbridge $(echo "scale=2; (${b[0]}-${a[0]})/100" | bc) pg $(echo "scale=2; (${q[0]}-${p[0]})/100" | bc) flt $((b[1]-a[1])) pgflt $((q[1]-p[1])) rss $rss load $l" >>$OUT ;;
  esac
}
$BIN serve -config $R/sqlite/popbridge.toml >$R/serve-sqlite.log 2>&1 & SQ=$!
wait_port $SQ_ADDR; sleep 1; bench $SQ_ADDR rawbody >/dev/null
for r in $(seq $3 $4); do
  start; run pg rawbody first; run dovecot rawbody first; stopserve
  start; run pg body first; run dovecot body first
  run pg rawbody warm; run dovecot rawbody warm; run pg body warm; run dovecot body warm
  run sqlite rawbody warm
  stopserve
done
kill $SQ; wait $SQ

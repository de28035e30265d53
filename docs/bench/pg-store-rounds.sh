#!/bin/bash
# Same-round UID STORE rounds behind docs/BENCHMARKS.md "UID STORE after migration 0004" (paths and ports of that run).
# Same-round UID STORE 1:* +FLAGS/-FLAGS (\Seen) against popbridge on PostgreSQL before (old: fillfactor 100)
# and after (new: migration 0004, fillfactor 70) and Dovecot, order rotated. usage: storerounds.sh FIRST LAST
R=/tmp/wt-pgops-run; OUT=${OUT:-$R/store-rounds.jsonl}
declare -A ADDR=([old]=127.0.0.1:29996 [new]=127.0.0.1:29995 [dovecot]=127.0.0.1:29145)
orders=("old new dovecot" "new dovecot old" "dovecot old new")
for r in $(seq $1 $2); do
  order=${orders[$(( (r-1) % 3 ))]}
  for t in $order; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    $R/bin/imapbench -addr ${ADDR[$t]} -user bench -pass benchpass -w store -runs 1 -label "$t" |
      sed "s/^{/{\"round\":$r,\"target\":\"$t\",\"load1\":$l,/" >> $OUT
  done
done

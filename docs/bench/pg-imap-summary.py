#!/usr/bin/env python3
"""Summarise same-round imapbench runs (docs/BENCHMARKS.md, "PostgreSQL backend").

Input: JSON lines of imapbench, each with "round" and "target" (sqlite, pg, dovecot) added.
Prints, per measure, the median (min-max) time of each target and the per-round ratios pg/dovecot,
pg/sqlite and sqlite/dovecot as median (min-max)."""
import json, statistics, sys
from collections import defaultdict

MEASURES = [("rawheader", "total_s"), ("header", "total_s"), ("rawbody", "total_s"), ("body", "total_s"),
            ("store", "add_seen_s"), ("store", "remove_seen_s"), ("search", "rare_s"), ("search", "common_s"),
            ("concurrent", "wall_s")]
val = defaultdict(dict)   # (workload, key) -> {(round, target): value}
extra = defaultdict(set)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "error" in r:
        print("ERROR", r)
        continue
    for w, k in MEASURES:
        if r["workload"] == w and k in r:
            val[(w, k)][(r["round"], r["target"])] = r[k]
    if r["workload"] == "search":
        extra["search hits"].add((r["target"], r.get("rare_hits"), r.get("common_hits")))
    if r["workload"] in ("header", "body"):
        extra["exists"].add((r["target"], r.get("exists"), r.get("messages")))
    if r["workload"] == "concurrent":
        extra["concurrent errors"].add((r["target"], r.get("errors")))

def mm(xs):
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})" if xs else "-"

print("| measure | popbridge PG s | popbridge SQLite s | Dovecot s | PG / Dovecot | PG / SQLite | SQLite / Dovecot |")
print("|---|---|---|---|---|---|---|")
for w, k in MEASURES:
    v = val[(w, k)]
    rounds = sorted({r for r, _ in v})
    t = {x: [v[(r, x)] for r in rounds if (r, x) in v] for x in ("pg", "sqlite", "dovecot")}
    def ratio(a, b):
        xs = [v[(r, a)] / v[(r, b)] for r in rounds if (r, a) in v and (r, b) in v]
        return f"{statistics.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f})" if xs else "-"
    print(f"| {w} {k} | {mm(t['pg'])} | {mm(t['sqlite'])} | {mm(t['dovecot'])} | {ratio('pg', 'dovecot')} | "
          f"{ratio('pg', 'sqlite')} | {ratio('sqlite', 'dovecot')} |")
for k, s in extra.items():
    print(k, sorted(s, key=str))

#!/usr/bin/env python3
"""Summarises the lines docs/bench/pg-body-rounds.sh writes: per label, phase (first, warm) and workload, the
per-round ratio of popbridge's time to Dovecot's run just after it, then median (min-max) over rounds, with the
median times, CPU seconds, minor faults and RSS.   usage: pg-body-summary.py FILE..."""
import statistics as st
import sys
from collections import defaultdict

runs = defaultdict(dict)  # (label, round, phase, workload) -> target -> fields
for path in sys.argv[1:]:
    for line in open(path):
        f = line.split()
        if len(f) < 6:
            continue
        label, rnd, phase, work, target, t = f[:6]
        kv = dict(zip(f[6::2], f[7::2]))
        kv["t"] = t
        runs[(label, rnd, phase, work)][target] = kv

groups = defaultdict(list)
for (label, rnd, phase, work), by in runs.items():
    if "dovecot" not in by:
        continue
    for target in ("pg", "sqlite"):
        if target in by:
            groups[(label, phase, work, target)].append((by[target], by["dovecot"]))


def med(xs):
    return "%.2f" % st.median(xs)


def rng(xs):
    return "%.2f-%.2f" % (min(xs), max(xs))


print("label phase workload target rounds | ratio median (min-max) | popbridge s | dovecot s | popbridge CPU s | PG CPU s | faults | PG faults | RSS MB | load")
for key in sorted(groups):
    rows = groups[key]
    ratio = [float(p["t"]) / float(d["t"]) for p, d in rows]
    pt = [float(p["t"]) for p, _ in rows]
    dt = [float(d["t"]) for _, d in rows]
    cpu = [float(p["popbridge"]) for p, _ in rows]
    flt = [float(p["flt"]) for p, _ in rows]
    pgc = [float(p["pg"]) for p, _ in rows if "pg" in p]
    pgf = [float(p["pgflt"]) for p, _ in rows if "pgflt" in p]
    rss = [float(p["rss"]) / 1024 for p, _ in rows if "rss" in p]
    load = [float(p["load"]) for p, _ in rows]
    print(" ".join(key), len(rows), "|", "%s (%s)" % (med(ratio), rng(ratio)), "|", med(pt), "|", med(dt), "|", med(cpu), "|",
          med(pgc) if pgc else "-", "|", "%d" % st.median(flt), "|", "%d" % st.median(pgf) if pgf else "-", "|",
          rng(rss) if rss else "-", "|", rng(load))

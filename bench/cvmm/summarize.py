"""Summarize bench.jsonl from scripts/gpu-run.sh: per configuration (access
mode, batch), the median over rounds of each operation's µs/page for the raw
C baseline and for vattnctl map (Go), and their ratio."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(lambda: defaultdict(list))  # (access, batch) -> who -> [report]
for line in open(sys.argv[1]):
    d = json.loads(line)
    who = "c" if d["backend"] == "raw-c" else "go"
    runs[(d["access"], d["batch"])][who].append({o["op"]: o for o in d["ops"]})

print("µs per 2 MiB page, median of rounds (1024 pages per round)")
print(f"{'access':>6} {'batch':>5} {'op':>7} {'raw C':>9} {'Go':>9} {'Go/C':>6}  {'C p50/call':>10} {'Go p50/call':>11}")
for (access, batch), who in sorted(runs.items()):
    for op in ["alloc", "map", "unmap", "free", "cycle"]:
        def med(reps, field):
            if op == "cycle":
                return statistics.median(sum(r[o][field] for o in ["alloc", "map", "unmap", "free"]) for r in reps)
            return statistics.median(r[op][field] for r in reps)
        c, g = med(who["c"], "us_per_page"), med(who["go"], "us_per_page")
        cp = "" if op == "cycle" else f"{med(who['c'], 'p50_us'):10.1f}"
        gp = "" if op == "cycle" else f"{med(who['go'], 'p50_us'):11.1f}"
        print(f"{access:>6} {batch:>5} {op:>7} {c:9.2f} {g:9.2f} {g / c:6.3f}  {cp:>10} {gp:>11}")
    print(f"       rounds: C {len(who['c'])}, Go {len(who['go'])}")

"""Summarize bench.jsonl from scripts/gpu-run.sh: per configuration (access
mode, batch) and operation, the median and the best (minimum) over rounds of
µs per page, for the raw C baseline and for vattnctl map (Go), and Go/C."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(lambda: defaultdict(list))  # (access, batch) -> who -> [ops]
for line in open(sys.argv[1]):
    d = json.loads(line)
    who = "c" if d["backend"] == "raw-c" else "go"
    runs[(d["access"], d["batch"])][who].append({o["op"]: o["us_per_page"] for o in d["ops"]})

OPS = ["alloc", "map", "unmap", "free"]
print("µs per 2 MiB page over rounds of 1024 pages; cycle = alloc+map+unmap+free")
print(f"{'access':>6} {'batch':>5} {'op':>6} | {'C med':>7} {'Go med':>7} {'Go/C':>6} | {'C min':>7} {'Go min':>7} {'Go/C':>6}")
for (access, batch), who in sorted(runs.items()):
    for op in OPS + ["cycle"]:
        def vals(reps):
            return [sum(r[o] for o in OPS) if op == "cycle" else r[op] for r in reps]
        c, g = vals(who["c"]), vals(who["go"])
        cm, gm = statistics.median(c), statistics.median(g)
        print(f"{access:>6} {batch:>5} {op:>6} | {cm:7.2f} {gm:7.2f} {gm / cm:6.3f} | {min(c):7.2f} {min(g):7.2f} {min(g) / min(c):6.3f}")
    print(f"{'':>6} {'':>5} rounds: C {len(who['c'])}, Go {len(who['go'])}")

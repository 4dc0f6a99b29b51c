"""Memory under floods: before and after 100,000 frames of each kind at one victim stack.

    python tests/bench/flood_bench.py [--frames 100000] [--kinds fragments,syn,ooo,arp,icmp]

Each flood (tests/hardening/flood_support.py) runs at 10,000 frames/s of virtual time. Printed
per kind, before the flood and after each quarter: frames fed, timer-heap entries against
live timers, Python memory traced since the flood began (tracemalloc), and the process's RSS.
Figures, not assertions (tests/hardening/test_floods.py asserts the flat shape).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hardening"))

from flood_support import KINDS, Sample, run_flood


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    print(f"{'kind':10} {'frames':>7} {'heap':>7} {'live':>7} {'traced MB':>10} {'RSS MB':>8}")

    for kind in args.kinds.split(","):
        def show(s: Sample, kind: str = kind) -> None:
            print(f"{kind:10} {s.frames:7d} {s.heap_entries:7d} {s.live_timers:7d} "
                  f"{s.traced_mb:10.2f} {s.rss_mb:8.1f}", flush=True)

        t0 = time.perf_counter()
        result = run_flood(kind, args.frames, warmup=0.0, samples=4, on_sample=show)
        drops = {name: sum(c.drops.values()) for name, c in result.victim.stack.counters.items()
                 if c.drops}
        print(f"{kind:10} done in {time.perf_counter() - t0:.1f} s wall; drops {drops}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A spoofed SYN flood over a TAP while a Linux client connects: with and without SYN cookies.

    sudo .venv/bin/python tests/bench/synflood_bench.py [--seconds 10] [--rates 5000,10000,20000,0]
        [--cookies 1,0] [--legit 40] [--backlog 128] [--timeout 5] [--json FILE]

For each flood rate (SYNs/s offered by the flooder; 0 = as fast as one Python raw socket goes)
and each tcp.syncookies value, in a namespace of its own (tests/hardening/synflood_support.py):
a flooder process sends spoofed SYNs from 198.18.0.0/15 at our stack over a TAP for SECONDS
while a Linux client opens LEGIT connections spread over the flood (each sends a line and
reads it echoed back, within TIMEOUT seconds). Printed per run: SYNs sent and the rate
reached, SYNs the stack answered per second (cookies and half-open connections) and
refused per second (SYN queue full, no cookies), what the TAP's queue dropped before the stack
read it, legitimate connections that succeeded, their latency (connect to echo, p50/p99),
and this process's RSS when the SYN queue had filled against when the flood ended. Figures,
never assertions (tests/hardening/test_syn_flood_tap.py asserts the outcome).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "hardening")]

from synflood_support import syn_flood  # noqa: E402

from layers.netns import NetNamespace, have_root_and_tun  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="5000,10000,20000,0",
                    help="SYNs/s offered, comma list (0: as fast as the flooder goes)")
    ap.add_argument("--cookies", default="1,0", help="tcp.syncookies values, comma list")
    ap.add_argument("--legit", type=int, default=40)
    ap.add_argument("--backlog", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds a legitimate client has to connect and get its echo")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    ok, why = have_root_and_tun()
    if not ok:
        print(f"synflood_bench: skipped: {why}")
        return 0
    rates = [float(r) for r in args.rates.split(",")]
    cookies = [int(c) for c in args.cookies.split(",")]
    print(f"synflood_bench: {args.seconds:g} s floods, {args.legit} legitimate clients each "
          f"(timeout {args.timeout:g} s), backlog {args.backlog}", flush=True)
    head = (f"{'cookies':>7} {'offered/s':>9} {'sent/s':>8} {'answered/s':>10} "
            f"{'refused/s':>9} {'tap drops':>9} {'legit ok':>9} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'RSS MB before->after':>21} {'timers':>11} {'conns':>5}")
    print(head, flush=True)
    rows = []
    for rate in rates:
        for cookie in cookies:
            with NetNamespace(prefix="layers-synflood") as ns:
                run = asyncio.run(syn_flood(ns, syncookies=cookie, rate=rate,
                                            seconds=args.seconds, legit=args.legit,
                                            backlog=args.backlog,
                                            connect_timeout=args.timeout))
            s = run.summary()
            rows.append(s)
            offered = f"{rate:9.0f}" if rate else f"{'max':>9}"
            print(f"{cookie:7d} {offered} {s['flooder_rate']:8d} {s['stack_answered_rate']:10d} "
                  f"{s['stack_dropped_syns'] / run.measured:9.0f} {s['tap_dropped']:9d} "
                  f"{s['connected']:4d}/{s['legit']:<4d} "
                  f"{s['latency_p50_ms']:7.1f} {s['latency_p99_ms']:7.1f} "
                  f"{s['rss_before_mb']:10.1f}->{s['rss_after_mb']:<10.1f} "
                  f"{s['timers_before']:5d}->{s['timers_after']:<5d} {s['conns_after']:5d}",
                  flush=True)
            if s["failures"]:
                print(f"        e.g. {s['failures'][0]}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "synflood", "args": vars(args), "runs": rows}, f, indent=1)
        print(f"synflood_bench: wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

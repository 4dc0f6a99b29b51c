"""Ping round-trip times from Linux to a layers stack, over TAP and over TUN.

Run as root (it makes its own network namespace and deletes it afterwards)::

    .venv/bin/python tests/bench/ping_rtt.py [--count 200] [--interval 0.002]

For each configuration (TAP and TUN with minimal plugin sets; TAP with every installed plugin,
which includes per-frame hooks such as examples/framecount's when it is installed) it starts
``layers up`` in the namespace (the way a user runs the stack), addresses Linux's side, sends
warm-up pings, then ``ping -c COUNT -i INTERVAL`` and prints the median, 10th/90th percentiles,
min and max of the per-packet times ping reports; the kernel answering on the namespace's
loopback is printed as a floor. ``--interval 0`` (root only) sends the next request as soon as
a reply comes, which keeps every process hot. It prints; it never asserts a timing (the host
is shared and noisy: compare figures only within one run).
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time

from layers.netns import NetNamespace, have_root_and_tun

STACK = "10.90.0.2"
LINUX = "10.90.0.1"
#: (label, link kind, extra `layers up` options)
CONFIGS = [
    ("TAP  arp,ipv4,icmp", "tap", ["--plugins", "arp,ipv4,icmp"]),
    ("TAP  arp,ipv4,icmp --no-offload", "tap", ["--plugins", "arp,ipv4,icmp", "--no-offload"]),
    ("TAP  all installed plugins", "tap", []),
    ("TUN  ipv4,icmp", "tun", ["--plugins", "ipv4,icmp"]),
]
_TIME = re.compile(r"time=([\d.]+) ms")


def rtts(ns: NetNamespace, dst: str, count: int, interval: float, size: int) -> list[float]:
    ns.run(["ping", "-n", "-q", "-c", "20", "-i", "0.01", "-W", "2", dst], check=False)  # warm-up
    r = ns.run(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", "-s", str(size),
                dst], check=False, timeout=count * (interval + 0.1) + 30)
    return [float(t) for t in _TIME.findall(r.stdout)]


def describe(name: str, times: list[float], count: int) -> str:
    if not times:
        return f"{name:<38} no replies"
    q = statistics.quantiles(times, n=10) if len(times) >= 10 else [min(times)] * 9
    return (f"{name:<38} median {statistics.median(times) * 1000:7.1f} us   "
            f"p10 {q[0] * 1000:7.1f}   p90 {q[8] * 1000:7.1f}   min {min(times) * 1000:7.1f}   "
            f"max {max(times) * 1000:8.1f}   ({len(times)}/{count} replies)")


def run_stack(ns: NetNamespace, label: str, kind: str, extra: list[str],
              args: argparse.Namespace) -> str:
    dev = f"b{kind}0"
    proc = ns.popen([sys.executable, "-m", "layers", "up", "--link", f"{kind}:{dev}",
                     "--address", f"{STACK}/24", *extra],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("layers up:"):
            raise SystemExit(f"layers up failed: {line}{proc.stderr.read() if proc.stderr else ''}")
        ns.run(["ip", "addr", "add", f"{LINUX}/24", "dev", dev])
        times = rtts(ns, STACK, args.count, args.interval, args.size)
        return describe(label, times, args.count)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--size", type=int, default=56)
    args = parser.parse_args()
    ok, why = have_root_and_tun()
    if not ok:
        print(f"ping_rtt: {why}", file=sys.stderr)
        return 2
    print(f"ping -c {args.count} -i {args.interval} -s {args.size}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}, python {sys.version.split()[0]}")
    with NetNamespace(prefix="layers-bench") as ns:
        lines = []
        lines.append(describe("kernel loopback (floor)",
                              rtts(ns, "127.0.0.1", args.count, args.interval, args.size),
                              args.count))
        for label, kind, extra in CONFIGS:
            lines.append(run_stack(ns, label, kind, extra, args))
        for line in lines:
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

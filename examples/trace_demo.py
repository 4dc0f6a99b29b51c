"""Regenerate the README's figure: two TCP flows share a bottleneck, traced and plotted.

Two stacks on the virtual clock (a few seconds of virtual time, deterministic) are joined
through a 20 Mbit/s, 10 ms drop-tail bottleneck (100 packets) with 0.1 % random loss after it.
A CUBIC bulk flow starts at once and a NewReno one two seconds later. The sender's telemetry
goes to a JSON-lines trace (one sample per flow every 5 ms), which ``layers plot`` draws::

    .venv/bin/python examples/trace_demo.py                   # docs/trace_demo.png
    .venv/bin/python examples/trace_demo.py --cc cubic,bbr \
        --shape rate=20mbit,delay=10ms,queue=codel --seconds 10 -o /tmp/fig.svg

The trace is kept next to the figure only with ``--trace FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from layers.cli import main as layers_main
from layers.stack import Stack
from layers.tracing import open_trace
from layers.virtual import VirtualNetwork
from layers.wire import ip4

CHUNK = bytes(64 * 1024)
PORT = 5001
SHAPE = "rate=20mbit,delay=10ms,queue=droptail,limit=100p"
FAULTS = "loss=0.1%,seed=7"


class Bulk(asyncio.Protocol):
    """Keeps its connection's send buffer full."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.fill()

    def fill(self) -> None:
        while not self.paused and not self.transport.is_closing():
            self.transport.write(CHUNK)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.fill()


class Sink(asyncio.Protocol):
    received = 0

    def data_received(self, data: bytes) -> None:
        Sink.received += len(data)


def run(trace: Path, seconds: float, algorithms: list[str], start_gap: float,
        shape: str = SHAPE, faults: str = FAULTS) -> dict[str, int]:
    plugins = ["arp", "ipv4", "tcp", *sorted({a for a in algorithms if a != "newreno"})]
    net = VirtualNetwork()
    settings = {"tcp.secret": "5e" * 16}
    a = net.new_stack(plugins, settings=settings, name="sender")
    b = net.new_stack(plugins, settings=settings, name="receiver")
    path = net.bottleneck(a, b, shape, addresses=("10.0.0.1/24", "10.0.0.2/24"), faults=faults)
    a.start()
    b.start()
    b.protocol("tcp").listen(Sink, 0, PORT)

    def start(stack: Stack, algorithm: str) -> None:
        stack.protocol("tcp").connect(Bulk(), ip4("10.0.0.2"), PORT,
                                      congestion_control=algorithm)

    with open_trace(trace, stack=a, interval=0.005) as writer:
        for i, algorithm in enumerate(algorithms):
            a.call_at(net.now + i * start_gap, start, a, algorithm)
        net.run_for(seconds)
    drops = path.forward.qdisc.stats.drops
    return {"samples": writer.samples, "received": Sink.received,
            "queue_drops": sum(drops.values())}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", default="docs/trace_demo.png", help="the figure (png/svg/pdf)")
    p.add_argument("--trace", default=None, help="keep the trace here (.jsonl or .csv)")
    p.add_argument("--seconds", type=float, default=8.0, help="virtual seconds to run")
    p.add_argument("--cc", default="cubic,newreno",
                   help="comma list: one flow per congestion control (default cubic,newreno)")
    p.add_argument("--gap", type=float, default=2.0, help="seconds between flow starts")
    p.add_argument("--shape", default=SHAPE, help=f"the bottleneck (default {SHAPE})")
    p.add_argument("--faults", default=FAULTS, help=f"random faults after it (default {FAULTS})")
    return p.parse_args(argv)


def demo(argv: list[str]) -> int:
    args = parse_args(argv)
    algorithms = [x.strip() for x in args.cc.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(args.trace) if args.trace else Path(tmp) / "trace_demo.jsonl"
        figures = run(trace, args.seconds, algorithms, args.gap, args.shape, args.faults)
        print(f"{args.seconds:g} virtual seconds: {figures['samples']} samples, "
              f"{figures['received'] / 1e6:.1f} MB delivered, {figures['queue_drops']} queue "
              f"drops")
        names = " and ".join(algorithms)
        return layers_main([
            "plot", str(trace), "-o", args.out, "--metrics", "cwnd,rtt,throughput", "--dpi", "120",
            "--title", f"{names} through {args.shape}, {args.faults}"])


if __name__ == "__main__":
    sys.exit(demo(sys.argv[1:]))

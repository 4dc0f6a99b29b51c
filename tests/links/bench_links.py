"""Per-frame cost of the link drivers and wrappers (a benchmark: prints, asserts nothing).

    .venv/bin/python tests/links/bench_links.py          # memory links and wrappers
    sudo .venv/bin/python tests/links/bench_links.py tap # plus TAP send/recv in a namespace
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable

from layers.links import FaultLink, Link, MemoryLink, PcapLink, TapLink
from layers.timers import VirtualClock

FRAME = b"\x02" * 12 + b"\x88\xb5" + bytes(1486)


def per_frame(wrap: Callable[[Link], Link], n: int = 200_000) -> float:
    clock = VirtualClock()
    a, b = MemoryLink.pair()
    b.queue_limit = n + 1
    link = wrap(a)
    link.attach(clock)
    b.attach(clock)
    t = time.perf_counter()
    for _ in range(n):
        link.send(FRAME)
    while b.recv() is not None:
        pass
    dt = time.perf_counter() - t
    link.close()
    return dt / n * 1e6


def bench_memory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Callable[[Link], Link]]] = [
            ("memory link (send+recv)", lambda link: link),
            ("+ FaultLink, no faults", lambda link: FaultLink(link)),
            ("+ FaultLink loss=1%", lambda link: FaultLink(link, loss=0.01, seed=1)),
            ("+ FaultLink loss,dup,corrupt 1%", lambda link: FaultLink(
                link, loss=0.01, duplicate=0.01, corrupt=0.01, seed=1)),
            ("+ PcapLink", lambda link: PcapLink(link, os.path.join(tmp, "b.pcap"))),
        ]
        for name, wrap in cases:
            print(f"{name:36s} {per_frame(wrap):6.2f} us/frame")
    for queue in ("droptail", "red", "codel", "fq_codel"):
        cost, what = per_frame_shaped(queue)
        print(f"{'+ ShaperLink 120% load, ' + queue:36s} {cost:6.2f} us/frame ({what})")


def per_frame_shaped(queue: str, load: float = 1.2, n: int = 100_000) -> tuple[float, str]:
    """A ShaperLink at 1 Gbit/s offered ``load`` times its rate: frames arrive one
    inter-arrival apart on the virtual clock, the runner polls at each deadline."""
    from layers.links.shaper import ShaperLink

    clock = VirtualClock()
    a, b = MemoryLink.pair()
    b.queue_limit = n + 1
    link = ShaperLink(a, f"rate=1gbit,delay=1ms,queue={queue},seed=1,dir=tx")
    link.attach(clock)
    b.attach(clock)
    gap = len(FRAME) * 8 / 1e9 / load
    t = time.perf_counter()
    now = 0.0
    for _ in range(n):
        link.send(FRAME)
        now += gap
        d = link.next_deadline()
        if d is not None and d <= now:
            clock.advance_to(d)
            link.poll(d)
        clock.advance_to(now)
    while (d := link.next_deadline()) is not None:
        clock.advance_to(d)
        link.poll(d)
    dt = time.perf_counter() - t
    assert link.tx is not None
    st = link.tx.qdisc.stats
    return dt / n * 1e6, f"{st.dequeued} sent, {st.dropped} dropped"


def bench_tap() -> None:
    from layers.netns import NetNamespace

    with NetNamespace(prefix="bench") as ns:
        for offload in (False, True):
            with ns.entered():
                tap = TapLink.open("btap0", offload=offload)
            assert tap.device_mac is not None and tap.mac is not None
            frame = tap.device_mac + tap.mac + b"\x88\xb5" + bytes(1486)
            n = 100_000
            t = time.perf_counter()
            for _ in range(n):
                tap.send(frame)
            dt = time.perf_counter() - t
            print(f"TAP send, offload={offload!s:5s}         {dt / n * 1e6:6.2f} us/frame "
                  f"({tap.stats.tx_frames} sent, {tap.stats.tx_errors} errors)")
            t = time.perf_counter()
            for _ in range(n):
                tap.recv()  # EAGAIN path: the cost of an empty poll
            dt = time.perf_counter() - t
            print(f"TAP recv on empty queue, offload={offload!s:5s} {dt / n * 1e6:6.2f} us/call")
            tap.close()


if __name__ == "__main__":
    bench_memory()
    if "tap" in sys.argv[1:]:
        bench_tap()

"""TCP loss recovery in numbers under reordering, jitter and loss, on the virtual clock.

    .venv/bin/python tests/bench/recovery_bench.py [--reorder 0,1,5] [--jitter 0,5,20]
        [--loss 0,1] [--seeds 1,2] [--size 2000000] [--path rate=20mbit,delay=10ms,...]
        [--reorder-gap 3] [--set KEY=VALUE ...] [--variant NAME:KEY=VALUE,... ...]
        [--json FILE (default: recovery-bench.json at the repository root, git-ignored)]

One bulk transfer per cell of the grid (reorder % x jitter ms x loss %, each seed): stack a
sends SIZE seeded bytes to stack b, then FIN. The path is a bottleneck (ShaperLink: RATE,
one-way DELAY each way, a drop-tail queue; ``--path``) followed at b's end by a seeded
FaultLink on both directions, so data and ACKs alike meet

* ``reorder`` %: a frame is held back until ``--reorder-gap`` later frames have passed (3,
  the duplicate-ACK threshold: each reordering is one a dupack counter takes for a loss);
* ``jitter`` J ms: a delay uniform in [0, 2J] ms per frame (FaultLink's delay=J, jitter=J),
  which reorders frames closer together than the spread;
* ``loss`` %: frames dropped at random.

Per transfer: goodput (payload bits over the completion time, from the first byte written to
the last delivered), completion time, the data segments really lost (dropped by the
bottleneck's queue or by the faults), the sender's retransmitted segments (``RetransSegs``)
and how they came about (fast retransmits, RTOs), **spurious retransmissions** counted by a
witness on b's link (data segments that arrived carrying no byte b had not already received:
a retransmission of something that was not lost, or the delayed original after its
retransmission), the stack's own undo counters (``SpuriousRTOs``, ``LossUndo``, ``FullUndo``,
``PartialUndo`` and any counter named like Undo, Spurious, Rack, TLP, DSACK, Reorder), and
whether the data arrived intact (SHA-256 of what b read against what a wrote).

The loss detector and anything else comes from stack settings: ``--set KEY=VALUE`` applies
to every run; ``--variant NAME:KEY=VALUE,...`` (repeatable) runs the whole grid once per
variant with those settings added, so detectors compare side by side in one run, e.g.
``--variant dupack: --variant rack:tcp.recovery=rack`` once a ``tcp.recovery`` setting
exists (an unknown setting is refused with the list of known ones). Prints a table per
variant and writes JSON: ``{"bench", "args", "wall_s", "cells": [per variant and cell, means
over the seeds], "runs": [every transfer]}``. Figures, never assertions: every number is
deterministic for a given seed and code, so two runs of one tree print the same table.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import random
import re
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layers.errors import ConfigurationError
from layers.links.base import LinkWrapper
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink
from layers.links.shaper import ShaperLink
from layers.virtual import VirtualNetwork
from layers.wire import ip4

ROOT = Path(__file__).resolve().parent.parent.parent
PLUGINS = "arp,ipv4,icmp,tcp,cubic,bbr"
PATH = "rate=20mbit,delay=10ms,queue=droptail,limit=100p"
PORT = 9
#: the sender's counters always reported (absent ones read 0)
COUNTERS = ("RetransSegs", "FastRetransmits", "RTOs", "LostRetransmits", "DupAcksIn",
            "SpuriousRTOs", "LossUndo", "FullUndo", "PartialUndo")
#: counters reported too when a stack has them (a detector's own)
EXTRA = re.compile(r"Undo|Spurious|Rack|RACK|TLP|Tlp|DSACK|Dsack|Reorder|Probe")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIH")


class Witness(LinkWrapper):
    """Watches the data segments arriving at the receiver's end for port ``port``: how many
    carried nothing new (every byte already received), and how many bytes those were."""

    def __init__(self, inner: Any, port: int) -> None:
        super().__init__(inner)
        self.port = port
        self.isn: int | None = None
        #: received byte ranges, relative to the first data byte: disjoint, sorted
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.segments = 0
        self.duplicates = 0
        self.duplicate_bytes = 0

    def recv(self) -> tuple[bytes, int] | None:
        got = self.inner.recv()
        if got is not None:
            self._see(got[0])
        return got

    def _see(self, frame: bytes) -> None:
        if len(frame) < 54 or frame[12:14] != b"\x08\x00":
            return
        vihl, _, total, _, _, _, proto, _, _, _ = _IP.unpack_from(frame, 14)
        if proto != 6:
            return
        t = 14 + (vihl & 0xF) * 4
        _, dport, seq, _, offflags = _TCP.unpack_from(frame, t)
        if dport != self.port:
            return
        if offflags & 0x02:  # SYN
            self.isn = seq
            return
        dlen = total - (vihl & 0xF) * 4 - (offflags >> 12) * 4
        if dlen <= 0 or self.isn is None:
            return
        start = (seq - self.isn - 1) & 0xFFFFFFFF
        end = start + dlen
        self.segments += 1
        i = bisect.bisect_right(self.starts, start) - 1
        if i >= 0 and self.ends[i] >= end:
            self.duplicates += 1
            self.duplicate_bytes += dlen
            return
        self._add(start, end)

    def _add(self, start: int, end: int) -> None:
        starts, ends = self.starts, self.ends
        lo = bisect.bisect_left(ends, start)  # first range ending at or after start
        hi = bisect.bisect_right(starts, end)  # ranges starting at or before end
        if lo < hi:
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]


class Sink:
    """Hashes and counts what arrives, noting when the last byte came."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.n = 0
        self.sha = hashlib.sha256()
        self.eof = False
        self.last = 0.0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.n += len(data)
        self.sha.update(data)
        self.last = self.clock.time

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def run_transfer(*, reorder: float, jitter: float, loss: float, seed: int, size: int,
                 path: str = PATH, reorder_gap: int = 3, settings: dict[str, Any] | None = None,
                 plugins: Sequence[str] = tuple(PLUGINS.split(",")),
                 timeout: float = 300.0) -> dict[str, Any]:
    """One transfer of ``size`` bytes through the path with these faults (``reorder`` and
    ``loss`` as fractions, ``jitter`` in seconds); its figures as a JSON-able dict."""
    net = VirtualNetwork()
    st = {"tcp.secret": f"{seed:032x}", **(settings or {})}
    a = net.new_stack(list(plugins), settings=st, name="sender")
    b = net.new_stack(list(plugins), settings=st, name="receiver")
    la, lb = MemoryLink.pair(("mem0", "mem0"))
    faults = FaultLink(lb, loss=loss, reorder=reorder, reorder_gap=reorder_gap, delay=jitter,
                       jitter=jitter, seed=seed)
    witness = Witness(faults, PORT)
    shaper = ShaperLink(la, path, pm=a.pm, record=False)
    a.add_interface(shaper, address="10.0.0.1/24")
    b.add_interface(witness, address="10.0.0.2/24")
    a.start()
    b.start()
    server = Sink(net.clock)
    b.protocol("tcp").listen(lambda: server, 0, PORT)
    client = Sink(net.clock)
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), PORT)
    if not net.run_until_true(lambda: client.transport is not None, timeout=60):
        raise RuntimeError("the connection did not open")
    data = random.Random(seed).randbytes(size)
    start = net.now
    written = 0
    block = 1 << 16
    while net.now < start + timeout:
        while written < size and conn.get_write_buffer_size() < 1 << 20:
            conn.write(data[written:written + block])
            written += block
            if written >= size:
                conn.write_eof()
        net.run_for(0.05)
        if server.eof:
            break
    done = server.eof and server.n == size
    elapsed = (server.last - start) if done else float("nan")
    c = a.counters["tcp"]
    counters = {k: c.get(k, 0) for k in COUNTERS}
    counters.update({k: v for k, v in c.items() if EXTRA.search(k) and k not in counters})
    return {
        "reorder_pct": reorder * 100, "jitter_ms": jitter * 1000, "loss_pct": loss * 100,
        "seed": seed, "size": size, "complete": done,
        "verified": done and server.sha.hexdigest() == hashlib.sha256(data).hexdigest(),
        "completion_s": round(elapsed, 4),
        "goodput_mbit": round(size * 8 / elapsed / 1e6, 3) if done else 0.0,
        "retrans_segs": counters["RetransSegs"],
        # data segments really lost: dropped by the bottleneck's queue or by the faults
        "lost_segs": (shaper.tx.qdisc.stats.dropped if shaper.tx is not None else 0)
        + faults.faults["rx_loss"],
        "acks_lost": faults.faults["tx_loss"],
        "spurious_segs": witness.duplicates,
        "spurious_bytes": witness.duplicate_bytes,
        "data_segs_received": witness.segments,
        "counters": counters,
        "faults": {k: v for k, v in faults.faults.items() if v},
    }


def parse_settings(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ConfigurationError(f"setting {part!r} should be KEY=VALUE, e.g. "
                                         f"tcp.sack=false")
            out[key.strip()] = value.strip()
    return out


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    if not name:
        raise ConfigurationError(f"variant {text!r} should be NAME:KEY=VALUE,..., e.g. "
                                 f"nosack:tcp.sack=false (NAME: for none)")
    return name, parse_settings([rest])


def numbers(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigurationError(f"--{what} {text!r} should be a comma list of numbers, "
                                 f"e.g. 0,1,5") from None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of one cell's figures."""
    ok = [r for r in rows if r["complete"]]

    def mean(key: str) -> float:
        return round(statistics.fmean(r[key] for r in ok), 3) if ok else float("nan")

    keys = sorted({k for r in rows for k in r["counters"]})
    return {
        "runs": len(rows), "complete": len(ok), "verified": all(r["verified"] for r in rows),
        "goodput_mbit": mean("goodput_mbit"), "completion_s": mean("completion_s"),
        "retrans_segs": mean("retrans_segs"), "lost_segs": mean("lost_segs"),
        "spurious_segs": mean("spurious_segs"),
        "counters": {k: round(statistics.fmean(r["counters"].get(k, 0) for r in rows), 2)
                     for k in keys},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reorder", default="0,1,5", help="percent, comma list")
    ap.add_argument("--jitter", default="0,5,20", help="milliseconds, comma list")
    ap.add_argument("--loss", default="0,1", help="percent, comma list")
    ap.add_argument("--seeds", default="1,2", help="comma list; each cell runs once per seed")
    ap.add_argument("--size", type=int, default=2_000_000, help="bytes per transfer")
    ap.add_argument("--path", default=PATH, help=f"the bottleneck (default {PATH})")
    ap.add_argument("--reorder-gap", type=int, default=3)
    ap.add_argument("--plugins", default=PLUGINS)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a stack setting for every run (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="run the grid once per variant with these settings (repeatable)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="virtual seconds a transfer may take before it counts as incomplete")
    ap.add_argument("--json", default=str(ROOT / "recovery-bench.json"),
                    help="write every run and cell here ('' for nowhere)")
    args = ap.parse_args(argv)
    try:
        base = parse_settings(args.set)
        variants = [parse_variant(v) for v in args.variant] or [("default", {})]
        reorders = numbers(args.reorder, "reorder")
        jitters = numbers(args.jitter, "jitter")
        losses = numbers(args.loss, "loss")
        seeds = [int(s) for s in numbers(args.seeds, "seeds")]
        plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]
        for _, extra in variants:  # refuse a bad setting before the first run, not midway
            VirtualNetwork().new_stack(plugins, settings={**base, **extra})
    except ConfigurationError as exc:
        print(f"recovery_bench: {exc}", file=sys.stderr)
        return 2
    print(f"recovery_bench: {args.size} bytes per transfer through {args.path}, faults on "
          f"both directions (reorder gap {args.reorder_gap}), seeds {args.seeds}; "
          f"settings {base or 'defaults'}", flush=True)
    print("columns: lost = data segments dropped by the queue or the faults; retrans = "
          "RetransSegs; spurious = segments b got with nothing new; fast = FastRetransmits; "
          "undo = LossUndo (means over the seeds)", flush=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    for name, extra in variants:
        settings = {**base, **extra}
        print(f"\n== {name}: {settings or 'defaults'}")
        print(f"{'reorder%':>8} {'jitter ms':>9} {'loss%':>5} {'goodput Mbit/s':>14} "
              f"{'time s':>7} {'lost':>6} {'retrans':>8} {'spurious':>8} {'fast':>6} {'RTOs':>5} "
              f"{'undo':>5} {'verified':>8}", flush=True)
        for reorder in reorders:
            for jitter in jitters:
                for loss in losses:
                    runs = []
                    for seed in seeds:
                        r = run_transfer(reorder=reorder / 100, jitter=jitter / 1000,
                                         loss=loss / 100, seed=seed, size=args.size,
                                         path=args.path, reorder_gap=args.reorder_gap,
                                         settings=settings, plugins=plugins,
                                         timeout=args.timeout)
                        r["variant"] = name
                        runs.append(r)
                    rows.extend(runs)
                    cell = {"variant": name, "settings": settings, "reorder_pct": reorder,
                            "jitter_ms": jitter, "loss_pct": loss, **aggregate(runs)}
                    cells.append(cell)
                    k = cell["counters"]
                    undo = k.get("LossUndo", 0)
                    incomplete = "" if cell["complete"] == cell["runs"] else \
                        f" ({cell['runs'] - cell['complete']} incomplete)"
                    print(f"{reorder:8g} {jitter:9g} {loss:5g} {cell['goodput_mbit']:14.2f} "
                          f"{cell['completion_s']:7.3f} {cell['lost_segs']:6.1f} "
                          f"{cell['retrans_segs']:8.1f} "
                          f"{cell['spurious_segs']:8.1f} {k.get('FastRetransmits', 0):6.1f} "
                          f"{k.get('RTOs', 0):5.1f} {undo:5.1f} "
                          f"{'yes' if cell['verified'] else 'NO':>8}{incomplete}", flush=True)
    wall = time.perf_counter() - t0
    print(f"\nrecovery_bench: {len(rows)} transfers in {wall:.1f} s of wall time "
          f"(means over {len(seeds)} seed(s) per cell)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "recovery", "args": vars(args), "wall_s": round(wall, 1),
                       "cells": cells, "runs": rows}, f, indent=1)
        print(f"recovery_bench: wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

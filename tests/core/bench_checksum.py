"""The Internet checksum's cost per buffer: ``layers.wire.checksum.ones_sum`` (folded,
little-endian) beside the plain ``int.from_bytes(data, "big") % 0xFFFF`` it replaced. Prints;
asserts nothing about speed (the property tests in test_wire.py check the results).

    .venv/bin/python tests/core/bench_checksum.py [SIZE ...] [--impl folded|plain -n N]

Wall time is noisy on a shared host: each figure is the best of interleaved rounds. For a
deterministic figure, count instructions: run ``--impl folded -n N`` under ``valgrind
--tool=cachegrind --cache-sim=no`` with two values of N and divide the difference of the
"I refs" totals by the difference of N (a hardware division counts as one instruction though
it takes tens of cycles, so instructions understate what the fold saves).
"""

from __future__ import annotations

import argparse
import os
import timeit
from functools import partial

from layers.wire.checksum import Buffer, ones_sum


def plain(data: Buffer, initial: int = 0) -> int:
    """The previous implementation: one big-endian number, one remainder."""
    mv = memoryview(data)
    value = int.from_bytes(mv, "big")
    if len(mv) & 1:
        value <<= 8
    value += initial
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


IMPLS = {"folded": ones_sum, "plain": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[20, 64, 576, 1460, 9000, 65535])
    parser.add_argument("--impl", choices=sorted(IMPLS), help="run one implementation N times")
    parser.add_argument("-n", type=int, default=0, help="calls for --impl (cachegrind)")
    args = parser.parse_args()
    if args.impl:
        fn = IMPLS[args.impl]
        data = memoryview(bytes(range(256)) * (args.sizes[0] // 256 + 1))[:args.sizes[0]]
        for _ in range(args.n):
            fn(data, 0x1234)
        return
    print(f"{'bytes':>6} {'plain us':>9} {'folded us':>10} {'speed-up':>9}")
    for size in args.sizes:
        data = memoryview(os.urandom(size))
        assert ones_sum(data, 7) == plain(data, 7)
        number = max(50, 200_000 // max(size, 64))
        best = {name: float("inf") for name in IMPLS}
        for _ in range(15):
            for name, fn in IMPLS.items():
                t = timeit.timeit(partial(fn, data, 7), number=number) / number
                best[name] = min(best[name], t)
        print(f"{size:6d} {best['plain'] * 1e6:9.2f} {best['folded'] * 1e6:10.2f} "
              f"{best['plain'] / best['folded']:8.2f}x")


if __name__ == "__main__":
    main()

"""TCP throughput: Linux to our stack and our stack to Linux over a TAP in a throwaway
namespace, with and without the virtio offloads (TSO/checksum), plus two stacks in one
process on a VirtualNetwork. Prints figures; asserts nothing about speed.

    sudo .venv/bin/python tests/tcp/bench_tcp.py [MiB]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # linux_tools

from linux_support import LINUX_IP, STACK_IP, blob, linux_peer, stack_on_tap
from linux_tools import peer_output
from tcp_support import virtual_bulk

from layers.netns import NetNamespace, have_root_and_tun
from layers.streams import open_connection, start_server


async def linux_to_us(ns: NetNamespace, size: int, offload: bool) -> float:
    done: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()

    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        n = 0
        t0 = None
        h = hashlib.sha256()
        while data := await r.read(1 << 20):
            if t0 is None:
                t0 = time.perf_counter()
            n += len(data)
            h.update(data)
        dt = time.perf_counter() - (t0 or time.perf_counter())
        w.close()
        assert h.digest() == hashlib.sha256(blob(size)).digest()
        done.set_result((n, dt))

    async with stack_on_tap(ns, offload=offload) as stack:
        server = await start_server(stack, sink, None, 6001)
        async with linux_peer(ns, ["send-client", STACK_IP, "6001", str(size)]) as proc:
            n, dt = await asyncio.wait_for(done, 300)
            await peer_output(proc, 60)
        server.close()
    assert n == size
    return size * 8 / dt / 1e6


async def us_to_linux(ns: NetNamespace, size: int, offload: bool) -> float:
    data = blob(size)
    async with stack_on_tap(ns, offload=offload) as stack:
        async with linux_peer(ns, ["sink-server", "6002"]) as proc:
            _reader, writer = await open_connection(stack, LINUX_IP, 6002)
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            n, sha, dt = await peer_output(proc, 300)
            writer.close()
    assert int(n) == size and sha == hashlib.sha256(data).hexdigest()
    return size * 8 / float(dt) / 1e6


def virtual_pair(size: int) -> float:
    """Two stacks in one process, one CPU for both: the engine's own cost."""
    seconds, _segments = virtual_bulk(random.Random(1).randbytes(size))
    return size * 8 / seconds / 1e6


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    size = mib << 20
    print(f"virtual pair, {mib} MiB (both stacks on one CPU): "
          f"{virtual_pair(size):.0f} Mbit/s")
    ok, why = have_root_and_tun()
    if not ok:
        print(f"skipping Linux figures: {why}")
        return
    for offload in (True, False):
        for name, fn in (("Linux -> layers", linux_to_us), ("layers -> Linux", us_to_linux)):
            with NetNamespace(prefix="layers-bench") as ns:
                rate = asyncio.run(fn(ns, size, offload))
            label = "offloads" if offload else "no offloads"
            print(f"{name:16} {label:12} {mib} MiB: {rate:7.0f} Mbit/s")


if __name__ == "__main__":
    main()

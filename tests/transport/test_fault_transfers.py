"""The same transfers as against Linux, between two of our stacks (no root):

* over a memory link wrapped in FaultLink, in real time under asyncio (streams API);
* on the virtual clock (VirtualNetwork), with every fault kind at once, both directions at the
  same time: fast and deterministic (the same seed gives the same run, counter for counter).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from layers.links.base import Link, Medium
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.streams import open_connection, start_server
from layers.virtual import VirtualNetwork
from layers.wire import ip4

PLUGINS = ["arp", "ipv4", "icmp", "tcp"]
ALL_FAULTS: dict[str, Any] = {"loss": 0.02, "reorder": 0.05, "delay": 0.010, "jitter": 0.002,
                              "corrupt": 0.01, "duplicate": 0.01}


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@asynccontextmanager
async def faulty_pair(**faults: Any) -> AsyncIterator[tuple[Stack, Stack, FaultLink, FaultLink]]:
    loop = asyncio.get_running_loop()
    sa = Stack(PLUGINS, clock=loop.time, name="a")
    sb = Stack(PLUGINS, clock=loop.time, name="b")
    ma, mb = MemoryLink.pair(("fa", "fb"), medium=Medium.ETHERNET, latency=0.001)
    fa, fb = FaultLink(ma, **faults, seed=1), FaultLink(mb, **faults, seed=2)
    sa.add_interface(fa, address="10.0.0.1/24")
    sb.add_interface(fb, address="10.0.0.2/24")
    ra, rb = AsyncioRunner(sa, loop), AsyncioRunner(sb, loop)
    ra.start()
    rb.start()
    try:
        yield sa, sb, fa, fb
    finally:
        ra.stop()
        rb.stop()


def _diagnose(a: Stack, b: Stack, fa: FaultLink, fb: FaultLink) -> str:
    """What a stalled transfer looks like: connections, counters, faults, timers."""
    lines = []
    for stack, link in ((a, fa), (b, fb)):
        tcp = stack.protocol("tcp")
        lines.append(f"{stack.name}: {stack.report()['connections']}")
        lines.append(f"  counters {dict(stack.counters['tcp'])} drops "
                     f"{dict(stack.counters['tcp'].drops)}")
        lines.append(f"  faults {dict(link.faults)} held {link.held}")
        for conn in tcp.conns.values():
            lines.append("  " + ", ".join(
                f"{k}={getattr(conn, k, None)!r}" for k in (
                    "state", "snd_una", "snd_nxt", "snd_wnd", "rcv_nxt", "rto", "rto_at",
                    "persist_at", "delack_at", "fin_queued")))
        lines.append(f"  now {stack.now:.3f} next deadline {stack.next_deadline()}")
    return "\n".join(lines)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    finally:
        writer.close()


def test_echo_through_every_fault_in_real_time() -> None:
    data = blob(256 << 10, 1)  # ~25 ms RTT with 2-4% loss each way: about 100 KB/s

    async def main() -> None:
        async with faulty_pair(**ALL_FAULTS) as (a, b, fa, fb):
            await start_server(b, _echo, "0.0.0.0", 7)
            reader, writer = await open_connection(a, "10.0.0.2", 7)

            async def send() -> None:
                writer.write(data)
                await writer.drain()
                writer.write_eof()

            sender = asyncio.ensure_future(send())
            try:
                got = await asyncio.wait_for(reader.read(), 60)
            except TimeoutError:
                raise AssertionError(_diagnose(a, b, fa, fb)) from None
            await sender
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            writer.close()
            for kind in ("loss", "reorder", "delay", "corrupt", "duplicate"):
                assert fa.count(kind) + fb.count(kind) > 0, kind
            assert a.counters["tcp"]["RetransSegs"] + b.counters["tcp"]["RetransSegs"] > 0

    asyncio.run(main())


def test_half_close_through_faults_in_real_time() -> None:
    async def main() -> None:
        async with faulty_pair(loss=0.02, reorder=0.05, delay=0.005) as (a, b, _, _):
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            async def reply_after_eof(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                request = await r.read()
                done.set_result(request)
                w.write(request[::-1])
                await w.drain()
                w.close()

            await start_server(b, reply_after_eof, "0.0.0.0", 8)
            reader, writer = await open_connection(a, "10.0.0.2", 8)
            request = blob(100_000, 2)
            writer.write(request)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 30) == request[::-1]
            assert await done == request
            writer.close()

    asyncio.run(main())


# --- virtual clock ----------------------------------------------------------------------------


class Sink(asyncio.Protocol):
    """A transport-level peer: collects bytes, echoes them when asked."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.data = bytearray()
        self.eof = False
        self.lost: Exception | bool | None = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.echo:
            self.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


def _virtual_run(seed: int, size: int) -> tuple[dict[str, int], float, bytes, bytes]:
    net = VirtualNetwork()
    settings = {"tcp.secret": "cd" * 16, "tcp.msl": 1.0}
    a = net.new_stack(PLUGINS, settings=settings, name="a")
    b = net.new_stack(PLUGINS, settings=settings, name="b")

    def wrap(link: Link) -> Link:
        wrap.n += 1  # type: ignore[attr-defined]
        return FaultLink(link, **ALL_FAULTS, seed=seed * 10 + wrap.n)  # type: ignore[attr-defined]

    wrap.n = 0  # type: ignore[attr-defined]
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.002, wrap=wrap)
    a.start()
    b.start()
    servers: list[Sink] = []

    def factory() -> Sink:
        servers.append(Sink(echo=True))
        return servers[-1]

    b.protocol("tcp").listen(factory, 0, 9)
    client = Sink()
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 9)
    assert net.run_until_true(lambda: client.transport is not None, timeout=30)
    data = blob(size, seed)
    conn.write(data)
    conn.write_eof()
    assert net.run_until_true(lambda: client.eof, timeout=600), len(client.data)
    conn.close()
    assert net.run_until_true(lambda: client.lost is None and servers[0].lost is None,
                              timeout=60)
    counters = {f"a.{k}": v for k, v in a.counters["tcp"].items()}
    counters.update({f"b.{k}": v for k, v in b.counters["tcp"].items()})
    return counters, net.now, bytes(servers[0].data), bytes(client.data)


@pytest.mark.parametrize("seed", [1, 2])
def test_echo_through_every_fault_on_the_virtual_clock(seed: int) -> None:
    size = 1 << 20
    counters, elapsed, at_server, echoed = _virtual_run(seed, size)
    data = blob(size, seed)
    assert at_server == data and echoed == data
    assert counters["a.RetransSegs"] > 0 and counters["b.RetransSegs"] > 0
    assert counters["a.InCsumErrors"] + counters["b.InCsumErrors"] > 0  # corruption caught
    # deterministic: the same seed replays the same run, to the counter and the microsecond
    again = _virtual_run(seed, size)
    assert again[0] == counters and again[1] == elapsed

"""layers.ping on the asyncio runner: two stacks joined by a real-time memory link."""

from __future__ import annotations

import asyncio
import errno
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from layers.errors import CompositionError, ConfigurationError, os_error
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.ping import PingResult, ping, summarize
from layers.protocols import EchoReply
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.wire import ip4

A, B = "10.0.0.1", "10.0.0.2"


@asynccontextmanager
async def two_stacks(
    plugins: list[Any] | None = None,
    settings_b: dict[str, Any] | None = None,
    medium: Medium = Medium.IP,
) -> AsyncIterator[tuple[Stack, Stack]]:
    loop = asyncio.get_running_loop()
    la, lb = MemoryLink.pair(medium=medium)
    a = Stack(plugins or ["ipv4", "icmp"], clock=loop.time, name="a")
    b = Stack(plugins or ["ipv4", "icmp"], clock=loop.time, name="b", settings=settings_b)
    a.add_interface(la, address=f"{A}/24")
    b.add_interface(lb, address=f"{B}/24")
    ra, rb = AsyncioRunner(a, loop), AsyncioRunner(b, loop)
    ra.start()
    rb.start()
    try:
        yield a, b
    finally:
        ra.stop()
        rb.stop()


async def collect(stack: Stack, dst: str, **kw: Any) -> list[PingResult]:
    return [r async for r in ping(stack, dst, **kw)]


def test_ping_over_asyncio_runner() -> None:
    async def main() -> list[PingResult]:
        async with two_stacks() as (a, _b):
            t0 = asyncio.get_running_loop().time()
            results = await collect(a, B, count=4, interval=0.05, size=56)
            elapsed = asyncio.get_running_loop().time() - t0
            assert elapsed >= 0.15  # three intervals between four requests
            return results

    results = asyncio.run(main())
    assert [r.seq for r in results] == [1, 2, 3, 4]
    assert all(r.ok and r.error is None for r in results)
    assert all(r.src == ip4(B) and r.size == 64 and r.ttl == 64 for r in results)
    assert all(r.rtt is not None and 0 <= r.rtt < 0.5 for r in results)
    assert str(results[0]).startswith(f"64 bytes from {B}: icmp_seq=1 ttl=64 time=")
    s = summarize(results)
    assert (s.transmitted, s.received, s.errors, s.loss) == (4, 4, 0, 0.0)
    rtts = [r.rtt for r in results if r.rtt is not None]
    assert s.rtt_min == min(rtts) and s.rtt_max == max(rtts)
    assert s.rtt_avg == pytest.approx(sum(rtts) / 4)
    assert s.time >= 0.15
    text = str(s)
    assert text.startswith("4 packets transmitted, 4 received, 0% packet loss, time ")
    assert "\nrtt min/avg/max/mdev = " in text and text.endswith(" ms")


def test_big_ping_over_asyncio_ethernet_with_arp() -> None:
    async def main() -> list[PingResult]:
        async with two_stacks(["arp", "ipv4", "icmp"], medium=Medium.ETHERNET) as (a, _b):
            return await collect(a, B, count=2, interval=0.02, size=4000)

    results = asyncio.run(main())
    assert [r.ok for r in results] == [True, True]
    assert all(r.size == 4008 for r in results)


def test_ping_timeouts_and_summary() -> None:
    async def main() -> list[PingResult]:
        async with two_stacks(settings_b={"icmp.echo_ignore_all": True}) as (a, _b):
            return await collect(a, B, count=3, interval=0.02, timeout=0.1)

    results = asyncio.run(main())
    assert len(results) == 3
    assert all(isinstance(r.error, TimeoutError) for r in results)
    assert str(results[0]) == "no answer yet for icmp_seq=1"
    s = summarize(results)
    assert (s.transmitted, s.received, s.errors, s.loss) == (3, 0, 0, 100.0)
    assert s.rtt_min is None
    assert str(s).startswith("3 packets transmitted, 0 received, 100% packet loss, time ")
    assert "rtt" not in str(s)


def test_unroutable_ping_reports_errors() -> None:
    async def main() -> list[PingResult]:
        async with two_stacks() as (a, _b):
            return await collect(a, "192.0.2.1", count=2, interval=0.01)

    results = asyncio.run(main())
    assert [r.error.errno for r in results if r.error] == [errno.ENETUNREACH] * 2
    s = summarize(results)
    assert (s.received, s.errors) == (0, 2)
    assert "+2 errors" in str(s)


def test_stack_without_echo_service() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stack = Stack(["ipv4"], clock=loop.time)
        with pytest.raises(CompositionError, match="add icmp to --plugins"):
            await collect(stack, B)

    asyncio.run(main())


def test_ping_needs_the_loop_clock_and_sane_arguments() -> None:
    async def main() -> None:
        stack = Stack(["ipv4", "icmp"])  # time.monotonic, not the loop's clock
        with pytest.raises(ConfigurationError, match=r"clock=loop\.time"):
            await collect(stack, B)
        loop = asyncio.get_running_loop()
        stack = Stack(["ipv4", "icmp"], clock=loop.time)
        for bad in ({"count": 0}, {"interval": 0}, {"size": 70000}, {"timeout": -1}):
            with pytest.raises(ConfigurationError):
                await collect(stack, B, **bad)

    asyncio.run(main())


def _result(seq: int, rtt: float | None, error: OSError | None = None) -> PingResult:
    reply = EchoReply(ip4(B), seq, 64, 64, rtt) if rtt is not None else None
    return PingResult(ip4(B), seq, 64, float(seq), float(seq) + (rtt or 1.0), reply, error)


def test_summary_matches_iputils_arithmetic() -> None:
    rtts = [0.001, 0.002, 0.004]
    results = [_result(i + 1, r) for i, r in enumerate(rtts)]
    results.append(_result(4, None, os_error(errno.ETIMEDOUT)))
    s = summarize(results)
    avg = sum(rtts) / 3
    mdev = math.sqrt(sum(r * r for r in rtts) / 3 - avg * avg)
    assert (s.transmitted, s.received, s.errors, s.loss) == (4, 3, 0, 25.0)
    assert s.rtt_avg == pytest.approx(avg) and s.rtt_mdev == pytest.approx(mdev)
    assert s.time == pytest.approx(5.0 - 1.0)  # first sent at 1.0, last answer at 5.0
    assert str(s) == (
        "4 packets transmitted, 3 received, 25% packet loss, time 4000ms\n"
        "rtt min/avg/max/mdev = 1.000/2.333/4.000/1.247 ms"
    )
    third = summarize(results[:2] + results[3:])
    assert f"{third.loss:g}" == "33.3333"
    assert str(summarize([])) == "0 packets transmitted, 0 received"


def test_error_lines_like_iputils() -> None:
    exc = os_error(errno.EHOSTUNREACH, "from 10.0.0.254")
    exc.reporter = ip4("10.0.0.254")  # type: ignore[attr-defined]
    exc.icmp_type = 3  # type: ignore[attr-defined]
    exc.icmp_code = 1  # type: ignore[attr-defined]
    r = _result(3, None, exc)
    assert str(r) == "From 10.0.0.254 icmp_seq=3 Destination Host Unreachable"
    exc.icmp_type, exc.icmp_code = 11, 0  # type: ignore[attr-defined]
    assert str(r).endswith("icmp_seq=3 Time to live exceeded")
    local = os_error(errno.EHOSTUNREACH)
    assert str(_result(2, None, local)) == f"From {B} icmp_seq=2 Destination Host Unreachable"

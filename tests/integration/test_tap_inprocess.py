"""Linux and a stack running in the test process, over a TAP inside the test's namespace."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
from collections.abc import AsyncIterator, Sequence

import pytest
from linux_tools import devname

from layers.interface import Interface
from layers.links.base import Link
from layers.links.pcap import PcapLink
from layers.netns import NetNamespace
from layers.ping import ping, summarize
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.wire.addr import mac_str

pytestmark = pytest.mark.root

LINUX = "10.80.0.1"
STACK = "10.80.0.2"


async def sh(ns: NetNamespace, *cmd: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run ``cmd`` in ``ns`` without blocking the loop the stack runs on."""
    proc = await asyncio.create_subprocess_exec(
        *ns.exec_args(cmd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()  # only the process this helper started
            await proc.wait()
    return proc.returncode or 0, out.decode()


@contextlib.asynccontextmanager
async def tap_stack(
    ns: NetNamespace, plugins: Sequence[str] | None = ("arp", "ipv4", "icmp"), *,
    busy_poll: float = 0.0, capture: io.BytesIO | None = None,
) -> AsyncIterator[tuple[Stack, Interface, str]]:
    """A stack on a new TAP in ``ns`` (Linux side addressed), run on this loop; with
    ``capture``, behind a pcap wrapper (a link with a descriptor but no burst reads)."""
    loop = asyncio.get_running_loop()
    tap = devname()
    stack = Stack(list(plugins) if plugins is not None else None, clock=loop.time, name=tap)
    with ns.entered():
        link: Link = stack.open_link(f"tap:{tap}")
        if capture is not None:
            link = PcapLink(link, capture)
        iface = stack.add_interface(link, address=f"{STACK}/24")
    runner = AsyncioRunner(stack, loop, busy_poll=busy_poll)
    try:
        rc, out = await sh(ns, "ip", "addr", "add", f"{LINUX}/24", "dev", tap)
        assert rc == 0, out
        runner.start()
        yield stack, iface, tap
    finally:
        with ns.entered():
            if runner.running:
                runner.stop()
            else:
                stack.stop()


@pytest.mark.parametrize("wrapped", [False, True], ids=["tap", "pcap-wrapped"])
def test_busy_polling_answers_a_ping_flood_and_leaves_the_loop_its_turns(
        netns: NetNamespace, wrapped: bool) -> None:
    """With busy polling the runner spins on the TAP after each burst (on poll(0) for a TAP,
    on reads for a wrapper that has no burst reads); every request is still answered, and
    the event loop still runs its other callbacks while it spins."""
    capture = io.BytesIO() if wrapped else None

    async def scenario() -> None:
        async with tap_stack(netns, busy_poll=0.0005, capture=capture) as (stack, _i, _tap):
            loop = asyncio.get_running_loop()
            ticks: list[float] = []

            def tick() -> None:
                ticks.append(loop.time())
                if len(ticks) < 20:
                    loop.call_later(0.01, tick)

            loop.call_soon(tick)
            rc, out = await sh(netns, "ping", "-n", "-q", "-c", "300", "-i", "0", "-W", "2",
                               STACK)
            assert rc == 0, out
            assert "300 received" in out
            assert stack.counters["icmp"]["out_echo_reps"] >= 300
            await asyncio.sleep(0.3)
            assert len(ticks) == 20
            assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.25

    asyncio.run(scenario())
    if capture is not None:  # the frames went through the wrapper
        assert len(capture.getvalue()) > 300 * 98


def test_linux_pings_the_stack_and_both_sides_learn_arp(netns: NetNamespace) -> None:
    async def scenario() -> None:
        async with tap_stack(netns) as (stack, iface, tap):
            rc, out = await sh(netns, "ping", "-n", "-c", "3", "-i", "0.05", "-W", "2", STACK)
            assert rc == 0, out
            assert "3 received" in out
            assert re.search(rf"64 bytes from {STACK}: icmp_seq=1 ttl=64 time=", out)

            # Linux resolved the stack's MAC through the stack's ARP reply ...
            rc, neigh = await sh(netns, "ip", "neigh", "show", "dev", tap)
            assert iface.mac is not None
            assert re.search(rf"{STACK} lladdr {mac_str(iface.mac)} ", neigh), neigh
            # ... and the stack learned Linux's (the kernel side's MAC of the TAP)
            device_mac = getattr(iface.link, "device_mac", None)
            assert device_mac is not None
            rows = stack.report()["arp"]
            assert {"address": LINUX, "mac": mac_str(device_mac)}.items() <= next(
                r for r in rows if r["address"] == LINUX).items()
            assert stack.counter("icmp")["in_echos"] == 3, dict(stack.counter("icmp"))

            # and the stack pings back, through its own ARP entry
            results = [r async for r in ping(stack, LINUX, count=3, interval=0.05)]
            assert [r.ok for r in results] == [True, True, True]
            assert summarize(results).received == 3

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [1400, 4000])
def test_large_pings_from_linux(netns: NetNamespace, size: int) -> None:
    """1400 bytes fits one frame; 4000 is fragmented by Linux and the reply by the stack."""

    async def scenario() -> None:
        async with tap_stack(netns) as (stack, _iface, _tap):
            rc, out = await sh(netns, "ping", "-n", "-c", "3", "-i", "0.05", "-W", "2",
                               "-s", str(size), STACK)
            assert rc == 0, out
            assert f"{size + 8} bytes from {STACK}: icmp_seq=3" in out
            ipv4 = stack.counter("ipv4")
            if size + 28 > 1500:
                assert ipv4["ReasmOKs"] == 3, dict(ipv4)
                assert ipv4["FragOKs"] == 3 and ipv4["FragCreates"] == 9, dict(ipv4)
            else:
                assert ipv4["ReasmOKs"] == 0 and ipv4["FragOKs"] == 0

    asyncio.run(scenario())

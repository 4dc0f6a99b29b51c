"""ECN against the Linux kernel over a TAP, in a namespace the test makes with
``net.ipv4.tcp_ecn=1`` set inside it only: negotiation both ways (the SYN and SYN-ACK flags on
the TAP, our connection state, and ECT(0) data counted by each side's IpExt counters; this
kernel's ``ss -ti`` is not asked, as 6.18 with AccECN no longer shows ``ecn``), then a shaper
on our TAP whose CoDel marks CE instead of dropping: each side echoes the other's marks, the
senders reduce and answer with CWR, nothing is retransmitted, the data arrives intact
(SHA-256)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from linux_support import LINUX_IP, STACK_IP, blob, linux_peer, stack_on_tap
from linux_tools import peer_output

from layers.links.base import Link, LinkWrapper, TxOffload
from layers.links.shaper import ShaperLink
from layers.netns import NetNamespace
from layers.streams import open_connection, start_server
from layers.wire.checksum import checksum
from layers.wire.tcp import TCP_ACK, TCP_CWR, TCP_ECE, TCP_SYN

pytestmark = pytest.mark.root

SIZE = 4 << 20
ECN = {"tcp.ecn": 1}


def linux_ecn_on(netns: NetNamespace) -> None:
    """tcp_ecn=1 in the test's namespace (the sysctl is per namespace; the host is untouched)."""
    netns.run(["sysctl", "-qw", "net.ipv4.tcp_ecn=1"])
    assert netns.run(["sysctl", "-n", "net.ipv4.tcp_ecn"]).stdout.strip() == "1"


def linux_ipext(netns: NetNamespace) -> dict[str, int]:
    """Linux's IpExt counters in the namespace (InECT0Pkts, InCEPkts...)."""
    lines = [ln.split() for ln in netns.run(["cat", "/proc/net/netstat"]).stdout.splitlines()
             if ln.startswith("IpExt:")]
    names, values = lines[0][1:], lines[1][1:]
    return {k: int(v) for k, v in zip(names, values, strict=True)}


class SynFlags(LinkWrapper):
    """Records the TCP flags of every SYN crossing the TAP: ("out"|"in", flags)."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.syns: list[tuple[str, int]] = []

    def _look(self, way: str, frame: bytes | bytearray | memoryview) -> None:
        if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 6:
            return
        tcp = 14 + (frame[14] & 0xF) * 4
        if frame[tcp + 13] & TCP_SYN:
            self.syns.append((way, frame[tcp + 13]))

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self._look("out", frame)
        self.inner.send(frame, offload)

    def recv(self) -> tuple[bytes, int] | None:
        got = self.inner.recv()
        if got is not None:
            self._look("in", got[0])
        return got


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()


class RxCEMarker(LinkWrapper):
    """Sets CE on every ``every``-th ECT packet the stack receives (fixing the IPv4 header
    checksum), as a congested router on Linux's path would. In an echo both directions carry
    the same rate, so only one of the two shaper queues reliably builds a standing queue; this
    makes the marks toward our stack certain instead of a matter of timing."""

    def __init__(self, inner: Link, every: int) -> None:
        super().__init__(inner)
        self.every = every
        self.ect_seen = 0
        self.marked = 0

    def recv(self) -> tuple[bytes, int] | None:
        got = self.inner.recv()
        if got is None:
            return None
        frame, flags = got
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or not frame[15] & 3:
            return got
        self.ect_seen += 1
        if self.ect_seen % self.every:
            return got
        buf = bytearray(frame)
        buf[15] |= 3  # CE
        hlen = (buf[14] & 0xF) * 4
        buf[24:26] = b"\0\0"
        buf[24:26] = checksum(buf[14 : 14 + hlen]).to_bytes(2, "big")
        self.marked += 1
        return bytes(buf), flags


def wrapper(marks: bool, seen: list[SynFlags]) -> Any:
    def wrap(link: Link) -> Link:
        if marks:
            # both ways through 50 Mbit/s CoDel queues that mark ECT packets instead of drops,
            # and a marker on the receive side (see RxCEMarker)
            link = ShaperLink(link, "rate=50mbit,delay=2ms,queue=codel,ecn=1,target=1ms,"
                                    "interval=10ms")
            link = RxCEMarker(link, every=20)
        syns = SynFlags(link)
        seen.append(syns)
        return syns

    return wrap


@pytest.mark.parametrize("marks", [False, True], ids=["negotiation", "ce-marks"])
def test_our_client_negotiates_ecn_with_linux(netns: NetNamespace, marks: bool) -> None:
    linux_ecn_on(netns)

    async def main() -> None:
        before = linux_ipext(netns)
        seen: list[SynFlags] = []
        async with stack_on_tap(netns, settings=ECN, wrap=wrapper(marks, seen)) as stack:
            async with linux_peer(netns, ["echo-server", "7101"]):
                reader, writer = await open_connection(stack, LINUX_IP, 7101)
                conn: Any = writer.transport
                assert conn.ecn_ok
                # our ECN-setup SYN, Linux's ECN-setup SYN-ACK (RFC 3168 6.1.1)
                assert seen[0].syns == [("out", TCP_SYN | TCP_ECE | TCP_CWR),
                                        ("in", TCP_SYN | TCP_ACK | TCP_ECE)]
                data = blob(SIZE)

                async def send() -> None:
                    writer.write(data)
                    await writer.drain()
                    writer.write_eof()

                sender = asyncio.ensure_future(send())
                got = await asyncio.wait_for(reader.read(), 120)
                await sender
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 10)
            check(stack, linux_ipext(netns), before, marks)

    asyncio.run(main())


@pytest.mark.parametrize("marks", [False, True], ids=["negotiation", "ce-marks"])
def test_linux_client_negotiates_ecn_with_us(netns: NetNamespace, marks: bool) -> None:
    linux_ecn_on(netns)

    async def main() -> None:
        before = linux_ipext(netns)
        seen: list[SynFlags] = []
        async with stack_on_tap(netns, settings=ECN, wrap=wrapper(marks, seen)) as stack:
            server = await start_server(stack, _echo, "0.0.0.0", 7102)
            async with linux_peer(netns, ["echo-client", STACK_IP, "7102", str(SIZE)]) as proc:
                sent_sha, received, received_sha = await peer_output(proc, 120)
            assert int(received) == SIZE and received_sha == sent_sha
            # Linux's ECN-setup SYN, our ECN-setup SYN-ACK
            assert seen[0].syns == [("in", TCP_SYN | TCP_ECE | TCP_CWR),
                                    ("out", TCP_SYN | TCP_ACK | TCP_ECE)]
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)
            check(stack, linux_ipext(netns), before, marks)

    asyncio.run(main())


def check(stack: Any, after: dict[str, int], before: dict[str, int], marks: bool) -> None:
    c, ip = stack.counters["tcp"], stack.counters["ipv4"]
    assert c["ECNNegotiated"] == 1 and c["ECNRefusedByPeer"] == 0
    # both sides' data left ECT(0): each side's IpExt counters saw it
    assert ip["InECT0Pkts"] > 0
    assert after["InECT0Pkts"] - before["InECT0Pkts"] > 0
    if not marks:
        assert c["ECNCEReceived"] == 0 and c["ECNReductions"] == 0
        return
    # Linux saw our CE-marked data and echoed ECE: we reduced and answered with CWR
    assert after["InCEPkts"] - before["InCEPkts"] > 0
    assert c["ECNEchoReceived"] > 0 and c["ECNReductions"] > 0 and c["ECNCWRSent"] > 0
    # we saw Linux's CE-marked data and echoed ECE: Linux answered with CWR
    assert ip["InCEPkts"] > 0 and c["ECNCEReceived"] > 0 and c["ECNCWRReceived"] > 0
    # a congestion response, not loss recovery
    assert c["RetransSegs"] == 0, c

"""A memory link with checksum offload (``VirtualNetwork.link(checksum_offload=True)``): TCP and
UDP leave their checksums partial, the far end trusts them (RX_CSUM_VERIFIED), ICMP is still
checked, corruption injected on such a link is still caught, and the default is unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from layers.datagrams import open_datagram_endpoint
from layers.links.base import RX_CSUM_VERIFIED, Link, LinkWrapper, Medium, TxOffload
from layers.protocols import EchoReply, EchoService
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4
from layers.wire.checksum import ones_sum, pseudo_header_sum

A, B = ip4("10.0.0.1"), ip4("10.0.0.2")


class Tap(LinkWrapper):
    """Records what its end sends (frame, offload) and receives (frame, flags)."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.sent: list[tuple[bytes, TxOffload | None]] = []
        self.received: list[tuple[bytes, int]] = []

    def send(self, frame: Any, offload: TxOffload | None = None) -> None:
        self.sent.append((bytes(frame), offload))
        self.inner.send(frame, offload)

    def recv(self) -> tuple[bytes, int] | None:
        got = self.inner.recv()
        if got is not None:
            self.received.append(got)
        return got


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True


def make(offload: bool, faults: str | None = None,
         medium: Medium = Medium.IP) -> tuple[VirtualNetwork, Stack, Stack, list[Tap]]:
    net = VirtualNetwork()
    plugins = ["ipv4", "icmp", "udp", "tcp"] + (["arp"] if medium is Medium.ETHERNET else [])
    a = net.new_stack(plugins, name="a")
    b = net.new_stack(plugins, name="b")
    taps: list[Tap] = []

    def wrap(link: Link) -> Link:
        taps.append(Tap(link))
        return taps[-1]

    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.001, medium=medium,
             wrap=wrap, faults=faults, checksum_offload=offload)
    a.start()
    b.start()
    return net, a, b, taps


def send_bulk(net: VirtualNetwork, a: Stack, b: Stack, data: bytes) -> Sink:
    sink = Sink()
    b.protocol("tcp").listen(lambda: sink, 0, 9)
    conn = a.protocol("tcp").connect(Sink(), B, 9)
    assert net.run_until_true(lambda: conn.state.name == "ESTABLISHED", timeout=5)
    conn.write(data)
    conn.write_eof()
    assert net.run_until_true(lambda: sink.eof, timeout=600)
    return sink


def tcp_checksum_complete(packet: bytes) -> bool:
    """Whether the TCP segment in this IPv4 packet carries its full checksum."""
    hlen = (packet[0] & 15) * 4
    total = int.from_bytes(packet[2:4], "big")
    seg = packet[hlen:total]
    src, dst = int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big")
    return ones_sum(seg, pseudo_header_sum(src, dst, 6, len(seg))) == 0xFFFF


def test_tcp_leaves_checksums_partial_and_the_far_end_trusts_them() -> None:
    net, a, b, (ta, tb) = make(offload=True)
    assert ta.capabilities.tx_checksum and ta.capabilities.rx_checksum
    data = random.Random(1).randbytes(300_000)
    sink = send_bulk(net, a, b, data)
    assert hashlib.sha256(sink.data).digest() == hashlib.sha256(data).digest()
    segments = [(f, o) for f, o in ta.sent if f[9] == 6]
    assert segments and all(o is not None and o.needs_csum for _, o in segments)
    # what crosses carries the pseudo-header sum, not the checksum (as on a veth pair) ...
    assert not any(tcp_checksum_complete(f) for f, _ in segments)
    # ... and arrives vouched for, so the receiver accepts it without summing the payload
    arrived = [(f, flags) for f, flags in tb.received if f[9] == 6]
    assert len(arrived) == len(segments)
    assert all(flags & RX_CSUM_VERIFIED for _, flags in arrived)
    assert b.counters["tcp"]["InCsumErrors"] == 0 and b.counters["tcp"]["InErrs"] == 0


def test_off_by_default_every_checksum_is_real() -> None:
    net, a, b, (ta, tb) = make(offload=False)
    assert not ta.capabilities.tx_checksum
    data = random.Random(2).randbytes(50_000)
    assert bytes(send_bulk(net, a, b, data).data) == data
    segments = [f for f, _ in ta.sent if f[9] == 6]
    assert segments and all(tcp_checksum_complete(f) for f in segments)
    assert not any(flags for _, flags in tb.received)


def test_udp_and_icmp_across_an_offloading_link() -> None:
    net, a, b, (ta, tb) = make(offload=True, medium=Medium.ETHERNET)
    got: list[bytes] = []

    class Server(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(bytes(data))

    open_datagram_endpoint(b, Server, local_addr=("0.0.0.0", 53))
    client, _ = open_datagram_endpoint(a, asyncio.DatagramProtocol)
    client.sendto(b"question" * 100, ("10.0.0.2", 53))
    replies: list[EchoReply | BaseException] = []
    echo = a.find(EchoService)  # type: ignore[type-abstract]
    assert echo is not None
    echo.echo(B, ident=7, seq=1, payload=b"ping" * 10, callback=replies.append)
    net.run_for(1.0)
    assert got == [b"question" * 100]
    assert len(replies) == 1 and isinstance(replies[0], EchoReply)
    # UDP left its checksum to the link; ICMP and ARP never do, and arrive unvouched
    offloaded = {(f[12:14], f[23] if f[12:14] == b"\x08\x00" else None): bool(o and o.needs_csum)
                 for f, o in ta.sent}
    assert offloaded[b"\x08\x00", 17] is True
    assert offloaded[b"\x08\x00", 1] is False and offloaded[b"\x08\x06", None] is False
    icmp_in = [flags for f, flags in tb.received if f[12:14] == b"\x08\x00" and f[23] == 1]
    assert icmp_in and not any(icmp_in)


def test_corruption_on_an_offloading_link_is_still_caught() -> None:
    """The fault injector completes the partial checksum before flipping a bit (netem's
    skb_checksum_help), so the far end verifies the corrupted frame and drops it."""
    net, a, b, _ = make(offload=True, faults="corrupt=3%,seed=5")
    data = random.Random(3).randbytes(400_000)
    sink = send_bulk(net, a, b, data)
    assert bytes(sink.data) == data
    # most flips land in the TCP segment (a partial checksum would have hidden them all)
    assert sum(s.counters["tcp"]["InCsumErrors"] for s in (a, b)) > 0

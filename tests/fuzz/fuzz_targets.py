"""Fuzz targets shared by the hypothesis tests and the coverage-guided runner (atheris).

One input is a selector byte and a body:

* ``0`` **wire**: every parser in :mod:`layers.wire` over the body and over the slices where
  an IPv4 header and a transport header would start in an Ethernet frame; only
  :class:`~layers.errors.MalformedPacket` may come out, and what parses re-encodes;
* ``1`` **reassembly**: the body cut into IPv4 fragments of one datagram (offsets, lengths,
  more-fragments flags and IDs taken from the body) fed to a stack's IPv4 receive path; the
  reassembler's accounting must stay within its limit and equal the sum of its queues;
* ``2`` **two stacks**: the body is one Ethernet frame to stack ``b`` of a dual-stack pair
  with live TCP connections over IPv4 and IPv6, ARP and NDP entries, then both stacks run for
  10 ms of virtual time; nothing may escape ``receive`` and neither stack may catch an
  internal error;
* ``3`` **IPv6 reassembly**: as ``1``, with IPv6 fragment headers (RFC 8200 4.5) to the
  ipv6 plugin's reassembler, whose accounting must stay within its limit.

A crash is any exception out of :func:`run_one`.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

from layers.errors import MalformedPacket
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.wire import (
    ARPPacket,
    EthernetHeader,
    IcmpMessage,
    IcmpQuote,
    IPv4Header,
    TCPHeader,
    UDPHeader,
    build_ipv4_header,
    ip4,
)
from layers.wire.ipv6 import (
    ANY6,
    NH_FRAGMENT,
    build_fragment_header,
    build_ipv6_header,
    ip6,
)
from layers.wire.tcp import parse_options, parse_timestamps

TARGETS = ("wire", "reassembly", "two_stacks", "reassembly6")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
A, B = ip4("10.0.0.1"), ip4("10.0.0.2")
A6, B6 = ip6("2001:db8::1"), ip6("2001:db8::2")
SETTINGS: dict[str, object] = {"tcp.secret": "5a" * 16, "ipv4.reasm_memory": 64 * 1024,
                               "ipv6.reasm_memory": 64 * 1024, "ndp.dad_transmits": 0}
PLUGINS = ["arp", "ipv4", "icmp", "udp", "tcp", "ipv6", "icmpv6", "ndp"]


class FuzzFailure(AssertionError):
    """An invariant broke (not an exception out of the code under test)."""


# --- wire ------------------------------------------------------------------------------
def _parse_all(data: bytes | memoryview) -> None:
    for parse in (EthernetHeader.from_bytes, ARPPacket.from_bytes, IPv4Header.from_bytes,
                  IcmpMessage.from_bytes, IcmpQuote.from_bytes, UDPHeader.from_bytes):
        try:
            parse(data)
        except MalformedPacket:
            pass
    try:
        tcp = TCPHeader.from_bytes(data)
    except MalformedPacket:
        pass
    else:
        try:
            again = TCPHeader.from_bytes(tcp.to_bytes(src=A, dst=B))
        except ValueError:
            pass  # unknown options that re-encode past 40 bytes
        else:
            if again.options != tcp.options or again.seq != tcp.seq:
                raise FuzzFailure(f"TCP header did not survive re-encoding: {tcp} / {again}")
    opts = memoryview(data)[:40]
    try:
        parsed = parse_options(opts)
    except MalformedPacket:
        parsed = None
    ts = parse_timestamps(opts)
    if parsed is not None and ts != parsed.timestamp:
        raise FuzzFailure(f"parse_timestamps {ts} != parse_options {parsed.timestamp}")


def wire(body: bytes) -> None:
    _parse_all(body)
    _parse_all(memoryview(body)[14:])
    if len(body) > 14:
        ihl = (body[14] & 0x0F) * 4 if len(body) > 14 else 20
        _parse_all(memoryview(body)[14 + ihl:])


# --- two stacks ------------------------------------------------------------------------
class _Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return True


class _DatagramSink(asyncio.DatagramProtocol):
    pass


class Pair:
    """Two stacks on memory links with fixed MACs and a fixed TCP secret, so that frames
    captured from one run (the corpus) fit another: same addresses, ports and ISNs."""

    def __init__(self, *, record: bool = False) -> None:
        self.clock = VirtualClock()
        self.a = Stack(PLUGINS, clock=self.clock, settings=SETTINGS, name="a")
        self.b = Stack(PLUGINS, clock=self.clock, settings=SETTINGS, name="b")
        la, lb = MemoryLink("a0", mac=MAC_A), MemoryLink("b0", mac=MAC_B)
        la.peer, lb.peer = lb, la
        self.la, self.lb = la, lb
        self.ia = self.a.add_interface(la, address="10.0.0.1/24")
        self.ib = self.b.add_interface(lb, address="10.0.0.2/24")
        self.a.add_address(self.ia, "2001:db8::1/64")
        self.b.add_address(self.ib, "2001:db8::2/64")
        self.a.start()
        self.b.start()
        self.frames: list[bytes] = []  # what b received, when recording
        self.recording = record
        self.server = _Sink()
        self.b.protocol("tcp").listen(lambda: self.server, 0, 5001)
        self.client = _Sink()
        self.conn = self.a.protocol("tcp").connect(self.client, B, 5001)
        self.server6 = _Sink()
        self.b.protocol("tcp").listen(lambda: self.server6, ANY6, 5002, v6only=True)
        self.client6 = _Sink()
        self.conn6 = self.a.protocol("tcp").connect(self.client6, B6, 5002)
        self.run(0.05)
        self.conn.write(b"hello " * 50)
        self.conn6.write(b"hello6 " * 50)
        self.run(0.05)

    def run(self, seconds: float) -> None:
        end = self.clock.time + seconds
        for _ in range(10_000):
            moved = False
            for stack, iface, link in ((self.a, self.ia, self.la), (self.b, self.ib, self.lb)):
                while (got := link.recv()) is not None:
                    if self.recording and link is self.lb:
                        self.frames.append(got[0])
                    stack.receive(iface, got[0], got[1])
                    moved = True
                stack.poll()
            if moved:
                continue
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline(),
                                     self.la.next_deadline(), self.lb.next_deadline())
                         if d is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > end:
                break
            self.clock.advance_to(nxt)
        self.clock.advance_to(end)

    def check(self) -> None:
        for stack in (self.a, self.b):
            failures = [*stack.internal_failures.values(), *stack.plugin_failures.values()]
            if failures:
                raise FuzzFailure(f"{stack.name}: " + "; ".join(f.message for f in failures))


_pair: Pair | None = None
_pair_uses = 0


def two_stacks(body: bytes) -> None:
    global _pair, _pair_uses
    if _pair is None or _pair_uses >= 500:
        _pair, _pair_uses = Pair(), 0
    _pair_uses += 1
    _pair.b.receive(_pair.ib, body)  # must not raise
    _pair.run(0.01)
    _pair.check()


# --- reassembly ------------------------------------------------------------------------
_reasm_pair: Pair | None = None


def _fragment_records(body: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """An ID byte, then records of (offset in 8-byte units: 2 bytes, flags: 1 byte, length:
    1 byte) and the data, until the body runs out: ``(ident, offset, flags, data)`` each."""
    i = 1
    ident = body[0] if body else 0
    while i + 4 <= len(body):
        off, flags, n = struct.unpack_from("!HBB", body, i)
        i += 4
        yield ident + (flags >> 6), off & 0x1FFF, flags, body[i:i + n]
        i += n


def _check_accounting(reassembler: Any, family: str) -> None:
    r = reassembler
    if r.memory > r.memory_limit or r.memory != sum(q.cost for q in r.queues.values()):
        raise FuzzFailure(f"{family} reassembly accounting {r.memory} of {r.memory_limit}")


def _reassembly_pair() -> Pair:
    global _reasm_pair
    if _reasm_pair is None:
        _reasm_pair = Pair()
    return _reasm_pair


def reassembly(body: bytes) -> None:
    """The records of :func:`_fragment_records` as IPv4 fragments (flags: more fragments,
    don't fragment, and the protocol: UDP, TCP, ICMP or unknown)."""
    p = _reassembly_pair()
    ip = p.b.protocol("ipv4")
    for ident, off, flags, data in _fragment_records(body):
        frag = off | (0x2000 if flags & 1 else 0) | (0x4000 if flags & 2 else 0)
        proto = (17, 6, 1, 253)[(flags >> 2) & 3]
        head = build_ipv4_header(A, B, proto, len(data), ident=ident, flags_frag=frag)
        p.b.receive(p.ib, MAC_B + MAC_A + b"\x08\x00" + head + data)
        _check_accounting(ip.reassembler, "IPv4")
    p.run(0.01)
    p.check()


def reassembly6(body: bytes) -> None:
    """The same records in IPv6 fragment headers (next header UDP, TCP, ICMPv6 or unknown)."""
    p = _reassembly_pair()
    ip = p.b.protocol("ipv6")
    for ident, off, flags, data in _fragment_records(body):
        nxt = (17, 6, 58, 253)[(flags >> 2) & 3]
        frag = build_fragment_header(nxt, off * 8, bool(flags & 1), ident)
        head = build_ipv6_header(A6, B6, NH_FRAGMENT, len(frag) + len(data))
        p.b.receive(p.ib, MAC_B + MAC_A + b"\x86\xdd" + head + frag + data)
        _check_accounting(ip.reassembler, "IPv6")
    p.run(0.01)
    p.check()


def run_one(data: bytes) -> None:
    """One fuzz input: its first byte selects the target."""
    if not data:
        return
    target = data[0] % len(TARGETS)
    body = data[1:]
    if target == 0:
        wire(body)
    elif target == 1:
        reassembly(body)
    elif target == 2:
        two_stacks(body)
    else:
        reassembly6(body)


# --- the seed corpus -------------------------------------------------------------------
def corpus() -> list[bytes]:
    """Seed inputs from frames our own stacks make: ARP, the TCP handshake with its options,
    data with timestamps and SACK, a fragmented ICMP echo, FIN; each frame b received as a
    ``wire`` and a ``two_stacks`` input, and its IP payload cut into fragments as a
    ``reassembly`` input."""
    seeds: list[bytes] = []
    for frame in recorded_frames():
        seeds.append(b"\x00" + frame)
        seeds.append(b"\x02" + frame)
        if len(frame) > 34 and frame[12:14] == b"\x08\x00":
            seeds.append(b"\x01" + bytes([len(seeds) & 0xFF]) + _as_records(frame[34:]))
        elif len(frame) > 54 and frame[12:14] == b"\x86\xdd":
            seeds.append(b"\x03" + bytes([len(seeds) & 0xFF]) + _as_records(frame[54:]))
    return seeds


def _as_records(payload: bytes) -> bytes:
    """The first 600 bytes of ``payload`` as :func:`_fragment_records` records of 200 bytes."""
    cuts = [payload[k:k + 200] for k in range(0, min(len(payload), 600), 200)]
    rec = bytearray()
    for k, piece in enumerate(cuts):
        more = 1 if k < len(cuts) - 1 else 0
        rec += struct.pack("!HBB", k * 25, more, len(piece)) + piece
    return bytes(rec)


def recorded_frames() -> list[bytes]:
    """The frames stack b of a :class:`Pair` receives in a short scenario."""
    p = Pair(record=True)
    got: list[Any] = []
    p.a.protocol("icmp").echo(B, ident=7, seq=1, payload=bytes(range(256)) * 12,
                              callback=got.append)
    p.run(0.1)
    p.b.protocol("icmp").echo(A, ident=8, seq=1, payload=b"ping", callback=got.append)
    p.a.protocol("icmpv6").echo(B6, ident=9, seq=1, payload=bytes(range(256)) * 12,
                                callback=got.append)
    p.run(0.1)
    p.conn.write(bytes(20_000))
    p.conn6.write(bytes(20_000))
    p.run(0.5)
    p.server.transport.write(b"reply" * 100)
    p.server6.transport.write(b"reply6" * 100)
    p.conn.write_eof()
    p.conn6.write_eof()
    p.run(1.0)
    return p.frames

"""Offloads: TSO super-segments and partial checksums when the link offers them, plain
segments when it does not; received super-segments are taken whole."""

from __future__ import annotations

from typing import Any

import attrs
from tcp_support import PEER, US, A, Wire

from layers.links.base import GSO_TCPV4, Link, LinkWrapper, TxOffload
from layers.links.memory import MemoryLink
from layers.wire import ip4
from layers.wire.checksum import checksum
from layers.wire.ipv4 import IPv4Header
from layers.wire.tcp import TCPHeader, TCPOptions, tcp_checksum_ok


class OffloadLink(LinkWrapper):
    """A memory link that claims checksum offload and TSO, and records what it is given."""

    def __init__(self, inner: Link, gso: int = 65535) -> None:
        super().__init__(inner)
        self.capabilities = attrs.evolve(inner.capabilities, tx_checksum=True,
                                         gso_max_size=gso)
        self.sent: list[tuple[bytes, TxOffload | None]] = []

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.sent.append((bytes(frame), offload))
        # the far end sees what the device would put on the wire (one frame here)
        self.inner.send(complete(bytes(frame), offload) if offload and offload.csum_offset
                        else frame)


def offload_wire(settings: dict[str, Any] | None = None, gso: int = 65535) -> tuple[Wire, Any]:
    w = Wire(settings)
    # replace the interface's link by one that offers offloads (before any connection)
    link = OffloadLink(w.link, gso)
    w.iface.link = link
    w.iface.capabilities = link.capabilities
    return w, link


def complete(frame: bytes, off: TxOffload) -> bytes:
    """What the device does with NEEDS_CSUM: checksum from csum_start, store at +offset."""
    data = bytearray(frame)
    csum = checksum(data[off.csum_start :])
    at = off.csum_start + off.csum_offset
    data[at : at + 2] = csum.to_bytes(2, "big")
    return bytes(data)


def test_large_write_leaves_as_one_tso_super_segment() -> None:
    w, link = offload_wire()
    conn, _, _synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460, timestamp=(1, 0),
                                                              wscale=7), wnd=65535)
    link.sent.clear()
    conn.write(b"G" * 200_000)
    frames = link.sent
    assert len(frames) >= 1
    frame, off = frames[0]
    ip = IPv4Header.from_bytes(frame)
    assert ip.total_length == len(frame) > 1500
    assert off is not None and off.gso_type == GSO_TCPV4 and off.gso_size == conn.mss == 1448
    assert (off.csum_start, off.csum_offset) == (20, 16)
    assert off.hdr_len == 20 + 32  # IP + TCP with timestamps
    payload_len = len(frame) - off.hdr_len
    assert payload_len % conn.mss == 0 and payload_len <= 65535 - 52
    fixed = complete(frame, off)
    assert tcp_checksum_ok(ip4(US), ip4(PEER), fixed[20:])
    # counted per wire segment
    assert w.counters["OutSegs"] >= payload_len // conn.mss


def test_small_segments_get_partial_checksum_only() -> None:
    w, link = offload_wire()
    conn, _, _ = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460))
    link.sent.clear()
    conn.write(b"small")
    ((frame, off),) = link.sent
    assert off is not None and off.gso_type == 0 and off.csum_offset == 16
    assert tcp_checksum_ok(ip4(US), ip4(PEER), complete(frame, off)[20:])


def test_no_super_segments_without_gso() -> None:
    w, link = offload_wire(gso=0)
    conn, _, _ = w.accept(iss=1000, syn_opts=TCPOptions(mss=1000))
    link.sent.clear()
    conn.write(b"n" * 5000)
    assert all(len(f) <= 1040 for f, _ in link.sent)


def test_gso_can_be_turned_off() -> None:
    w, link = offload_wire({"tcp.gso": False})
    conn, _, _ = w.accept(iss=1000, syn_opts=TCPOptions(mss=1000))
    link.sent.clear()
    conn.write(b"n" * 5000)
    assert all(len(f) <= 1040 for f, _ in link.sent)


def test_plain_link_gets_full_checksums() -> None:
    w = Wire()
    assert isinstance(w.link, MemoryLink)
    conn, _, _ = w.accept(iss=1000, syn_opts=TCPOptions(mss=1000))
    conn.write(b"c" * 10)
    seg = w.one()  # Wire.sent() verifies every checksum
    assert seg.payload == b"c" * 10


def test_received_super_segment_is_taken_whole() -> None:
    w = Wire()
    _conn, proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460))
    big = bytes(range(256)) * 256  # 64 KiB, as a TSO peer's GRO'd segment would be
    hdr = TCPHeader(40000, 80, 1001, synack.seq + 1, A, 65535)
    w.inject_raw(hdr.to_bytes(big[:60000], src=ip4(PEER), dst=ip4(US)))
    assert bytes(proto.data) == big[:60000]
    assert w.one().ack == 61001

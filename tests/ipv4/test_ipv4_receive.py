"""The ipv4 receive path: validation and every drop reason, addressing, delivery, scapy as the
packet builder (we parse what an independent implementation encodes)."""

from __future__ import annotations

from typing import Any

import pytest
from ipv4_support import TEST_PROTO, Harness, TransportPlugin, ip_header
from scapy.layers.inet import IP, IPOption_RR, IPOption_Security
from scapy.layers.inet import fragment as scapy_fragment
from scapy.packet import Raw

from layers.hookspecs import hookimpl
from layers.links.base import RX_BROADCAST, RX_CSUM_VERIFIED, Medium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4
from layers.wire.checksum import checksum


@pytest.fixture
def h() -> Harness:
    return Harness()


def scapy_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", data: bytes = b"hello",
                 **kw: Any) -> bytes:
    return bytes(IP(src=src, dst=dst, proto=TEST_PROTO, **kw) / Raw(data))


def test_scapy_packet_over_the_link_is_delivered(h: Harness) -> None:
    pkt = scapy_packet(data=b"payload bytes", ttl=17, tos=0x10, id=4242)
    h.ia.transmit(pkt)  # raw, as if some other IPv4 implementation sent it
    h.net.run_until_idle()
    [got] = h.tb().got
    assert (got.src, got.dst, got.protocol) == (ip4("10.0.0.1"), ip4("10.0.0.2"), TEST_PROTO)
    assert (got.ttl, got.tos) == (17, 0x10)
    assert got.header == pkt[:20] and got.payload == b"payload bytes"
    assert got.views, "header and payload should be memoryview slices"
    assert got.interface is h.ib and not got.broadcast and got.flags == 0
    c = h.counters()
    assert c["InReceives"] == 1 and c["InDelivers"] == 1 and not c.drops


def test_rx_csum_verified_flag_passes_through(h: Harness) -> None:
    h.inject(scapy_packet(), RX_CSUM_VERIFIED)
    assert h.tb().got[0].flags & RX_CSUM_VERIFIED


def test_ttl_is_not_decremented_and_zero_ttl_is_still_delivered(h: Harness) -> None:
    # a host does not forward, so TTL 0 or 1 arriving for us is fine (RFC 1122 3.2.1.7)
    h.inject(scapy_packet(ttl=0))
    h.inject(scapy_packet(ttl=1))
    assert [g.ttl for g in h.tb().got] == [0, 1]


def _good() -> bytes:
    return ip_header("10.0.0.1", "10.0.0.2", 8) + b"12345678"


def _with(pkt: bytes, at: int, value: bytes, fix_checksum: bool = True) -> bytes:
    b = bytearray(pkt)
    b[at : at + len(value)] = value
    if fix_checksum:  # so that only the field under test is wrong
        b[10:12] = b"\0\0"
        b[10:12] = checksum(bytes(b[:20])).to_bytes(2, "big")
    return bytes(b)


BAD = {
    "truncated": [b"", b"\x45" * 19, _good()[:19]],
    "bad_version": [_with(_good(), 0, b"\x65"), _with(_good(), 0, b"\x05")],
    "bad_ihl": [
        _with(_good(), 0, b"\x44"),  # IHL 4 is below the minimum
        _with(_good(), 0, b"\x4f"),  # IHL 15 = 60 bytes, past the 28-byte packet
        _with(_good(), 0, b"\x40"),
    ],
    "bad_length": [
        _with(_good(), 2, (1000).to_bytes(2, "big")),  # a total length that lies
        _with(_good(), 2, (29).to_bytes(2, "big")),  # one byte more than present
        _with(_good(), 2, (19).to_bytes(2, "big")),  # shorter than the header
    ],
    "bad_checksum": [
        _with(_good(), 10, b"\x00\x00", fix_checksum=False),
        _with(_good(), 8, b"\x07", fix_checksum=False),  # TTL changed, checksum not
    ],
}


@pytest.mark.parametrize(
    ("reason", "packet"), [(r, p) for r, ps in BAD.items() for p in ps],
    ids=[f"{r}-{i}" for r, ps in BAD.items() for i in range(len(ps))],
)
def test_malformed_headers_are_dropped_by_reason(h: Harness, reason: str, packet: bytes) -> None:
    h.inject(packet)
    c = h.counters()
    assert dict(c.drops) == {reason: 1}
    assert c["InHdrErrors"] == 1 and c["InReceives"] == 1
    assert h.tb().got == []


def test_the_good_packet_used_above_is_good(h: Harness) -> None:
    h.inject(_good())
    assert [g.payload for g in h.tb().got] == [b"12345678"]


def test_version_6_on_an_ip_link_never_reaches_ipv4(h: Harness) -> None:
    h.ia.transmit(_with(_good(), 0, b"\x65"))
    h.net.run_until_idle()
    assert h.ib.counters.drops["unknown_ip_version"] == 1


def test_trailing_link_padding_is_ignored(h: Harness) -> None:
    pkt = scapy_packet(data=b"abc")  # 23 bytes: an Ethernet minimum frame pads it to 46
    h.inject(pkt + b"\x00" * 23)
    [got] = h.tb().got
    assert got.payload == b"abc"
    assert not h.counters().drops


def test_options_are_skipped_and_counted(h: Harness) -> None:
    pkt = bytes(
        IP(src="10.0.0.1", dst="10.0.0.2", proto=TEST_PROTO,
           options=[IPOption_RR(routers=["1.2.3.4"]), IPOption_Security()])
        / Raw(b"after options")
    )
    assert pkt[0] & 0xF > 5
    h.inject(pkt)
    [got] = h.tb().got
    assert got.payload == b"after options"
    assert got.header == pkt[: (pkt[0] & 0xF) * 4]
    assert h.counters()["InOptions"] == 1


def test_garbage_options_are_skipped_too(h: Harness) -> None:
    opts = b"\x44\xff\x00\x00" + b"\x99" * 4  # a timestamp option claiming 255 bytes
    h.inject(ip_header("10.0.0.1", "10.0.0.2", 2, options=opts) + b"ok")
    assert [g.payload for g in h.tb().got] == [b"ok"]


@pytest.mark.parametrize(
    "src",
    ["127.0.0.1", "224.0.0.1", "239.1.2.3", "240.0.0.1", "255.255.255.255", "10.0.0.255",
     "0.1.2.3", "0.0.0.0", "10.0.0.2"],
)
def test_martian_sources_are_dropped(h: Harness, src: str) -> None:
    h.inject(scapy_packet(src=src))
    assert h.counters().drops == {"martian_source": 1}
    assert h.counters()["InAddrErrors"] == 1
    assert h.tb().got == []


def test_unspecified_source_to_broadcast_is_accepted(h: Harness) -> None:
    # BOOTP/DHCP clients send from 0.0.0.0 to 255.255.255.255 (RFC 1122 3.2.1.3)
    h.inject(scapy_packet(src="0.0.0.0", dst="255.255.255.255"), RX_BROADCAST)
    [got] = h.tb().got
    assert got.src == 0 and got.broadcast


@pytest.mark.parametrize(("dst", "reason"), [
    ("10.0.0.3", "not_for_us"), ("192.168.1.1", "not_for_us"), ("10.0.1.255", "not_for_us"),
    ("0.0.0.0", "not_for_us"), ("224.0.0.1", "multicast"),
])
def test_other_destinations_are_not_for_us(h: Harness, dst: str, reason: str) -> None:
    h.inject(scapy_packet(dst=dst))
    assert h.counters().drops == {reason: 1}
    assert h.tb().got == []


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255"])
def test_broadcasts_are_delivered_and_marked(h: Harness, dst: str) -> None:
    h.inject(scapy_packet(dst=dst), RX_BROADCAST)
    [got] = h.tb().got
    assert got.broadcast and got.dst == ip4(dst) and got.flags & RX_BROADCAST
    assert h.counters()["InBcastPkts"] == 1


def test_unicast_in_a_link_broadcast_is_dropped(h: Harness) -> None:
    h.inject(scapy_packet(), RX_BROADCAST)  # RFC 1122 3.3.6
    assert h.counters().drops == {"unicast_in_link_broadcast": 1}


def test_unicast_in_a_link_broadcast_can_be_allowed() -> None:
    h = Harness(settings={"ipv4.drop_unicast_in_l2_broadcast": False})
    h.inject(scapy_packet(), RX_BROADCAST)
    assert len(h.tb().got) == 1


def _two_interface_b(settings: dict[str, object] | None = None) -> Harness:
    h = Harness(settings=settings)
    h.b.add_interface(MemoryLink("other", medium=Medium.IP), address="192.168.5.1/24")
    return h


def test_weak_host_model_accepts_any_local_address() -> None:
    h = _two_interface_b()
    h.inject(scapy_packet(dst="192.168.5.1"))
    assert [g.dst for g in h.tb().got] == [ip4("192.168.5.1")]


def test_strong_host_model_accepts_only_the_interface_addresses() -> None:
    h = _two_interface_b({"ipv4.strong_host": True})
    h.inject(scapy_packet(dst="192.168.5.1"))
    h.inject(scapy_packet(dst="10.0.0.2"))
    assert [g.dst for g in h.tb().got] == [ip4("10.0.0.2")]
    assert h.counters().drops == {"not_for_us": 1}


def test_unknown_protocol_asks_for_protocol_unreachable(h: Harness) -> None:
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=200) / Raw(b"x" * 12))
    h.inject(pkt)
    [(kind, datagram, code)] = h.ep.of(h.b).calls
    assert (kind, code) == ("unreachable", 2)
    assert datagram.protocol == 200 and bytes(datagram.header) == pkt[:20]
    assert bytes(datagram.payload) == b"x" * 12
    c = h.counters()
    assert c["InUnknownProtos"] == 1 and c.drops == {"unknown_protocol": 1}


def test_unknown_protocol_in_a_broadcast_is_dropped_silently(h: Harness) -> None:
    h.inject(bytes(IP(src="10.0.0.1", dst="10.0.0.255", proto=200) / Raw(b"x")), RX_BROADCAST)
    assert h.ep.of(h.b).calls == []
    assert h.counters()["InUnknownProtos"] == 1


def test_without_an_error_reporter_the_stack_counts_instead() -> None:
    net = VirtualNetwork()
    tp = TransportPlugin()
    _, b = net.pair(["ipv4", tp], medium=Medium.IP)
    b.protocol("ipv4").receive(
        b.interfaces[0], memoryview(bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=99))), 0
    )
    assert b.counter("stack").drops["no_error_reporter"] == 1


def test_a_bad_packet_from_the_link_does_not_disturb_the_next(h: Harness) -> None:
    for pkt in (b"\x45", _with(_good(), 10, b"\xde\xad", fix_checksum=False), _good()):
        h.ia.transmit(pkt)
    h.net.run_until_idle()
    assert [g.payload for g in h.tb().got] == [b"12345678"]
    assert h.counters()["InReceives"] == 3 and h.counters()["dropped"] == 2


class UnpackedTransport:
    """A transport that offers ``receive_unpacked`` beside ``receive``: records which one
    each datagram reached, with what."""

    name = "unpacked"
    protocol = TEST_PROTO

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def receive(self, d: Any) -> None:
        self.calls.append(("receive", d.src, d.dst, d.ttl, d.tos, bytes(d.payload), d.flags,
                           d.broadcast))

    def receive_unpacked(self, iface: Any, src: int, dst: int, ttl: int, tos: int,
                         payload: Any, flags: int, broadcast: bool) -> None:
        assert isinstance(payload, memoryview)
        self.calls.append(("unpacked", iface, src, dst, ttl, tos, bytes(payload), flags,
                           broadcast))

    def error(self, error: Any) -> None:
        pass


class UnpackedPlugin:
    def __init__(self) -> None:
        self.transport = UnpackedTransport()

    @hookimpl
    def layers_transport_protocols(self, stack: Any) -> list[Any]:
        return [self.transport]


def test_a_transport_with_receive_unpacked_gets_fields_and_reassembled_ones_a_datagram(
) -> None:
    plugin = UnpackedPlugin()
    stack = Stack(["ipv4", plugin])
    iface = stack.add_interface(MemoryLink("u0", medium=Medium.IP), address="10.0.0.2/24")
    stack.start()
    ip = stack.protocol("ipv4")
    src, dst = ip4("10.0.0.1"), ip4("10.0.0.2")
    ip.receive(iface, memoryview(scapy_packet(data=b"whole", ttl=9, tos=0x12)),
               RX_CSUM_VERIFIED)
    ip.receive(iface, memoryview(scapy_packet(dst="10.0.0.255", data=b"to all")), 0)
    # a reassembled datagram has no single packet to take fields from: it comes whole
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", proto=TEST_PROTO, ttl=5) / Raw(b"y" * 48)
    for piece in scapy_fragment(pkt, fragsize=24):
        ip.receive(iface, memoryview(bytes(piece)), 0)
    assert plugin.transport.calls == [
        ("unpacked", iface, src, dst, 9, 0x12, b"whole", RX_CSUM_VERIFIED, False),
        ("unpacked", iface, src, ip4("10.0.0.255"), 64, 0, b"to all", 0, True),
        ("receive", src, dst, 5, 0, b"y" * 48, 0, False),
    ]
    c = stack.counter("ipv4")
    assert c["InDelivers"] == 3 and not c.drops

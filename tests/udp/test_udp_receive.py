"""The receive path: checksum and length validation, demultiplexing, broadcast, port
unreachable, with scapy building what arrives and decoding what leaves."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.packet import Raw
from udp_support import RecordingReporter, Wire

from layers.links.base import RX_CSUM_VERIFIED
from layers.wire import build_ipv4_header, checksum, ip4, pseudo_header_sum
from layers.wire.udp import build_udp

US, PEER = "10.0.0.1", "10.0.0.9"


def udp_from_peer(dport: int, payload: bytes = b"ping", *, sport: int = 40000,
                  dst: str = US, chksum: int | None = None, len: int | None = None) -> IP:
    pkt = IP(src=PEER, dst=dst) / UDP(sport=sport, dport=dport, chksum=chksum, len=len)
    return pkt / payload


def raw_ip(segment: bytes, src: str = PEER, dst: str = US) -> bytes:
    return bytes(build_ipv4_header(ip4(src), ip4(dst), 17, len(segment))) + segment


def scapy_ok(pkt: IP) -> bool:
    """scapy's own verdict on a UDP checksum: recompute with the field cleared."""
    copy = IP(bytes(pkt))
    want = copy[UDP].chksum
    copy[UDP].chksum = None
    return bool(IP(bytes(copy))[UDP].chksum == want)


# --- checksums ---------------------------------------------------------------------------


def test_scapy_datagram_accepted_and_answered() -> None:
    w = Wire()
    echo = w.open(echo=True, local_addr=("0.0.0.0", 7))
    w.inject(udp_from_peer(7, b"hello there"))
    assert echo.datagrams == [(b"hello there", (PEER, 40000))]
    (reply,) = w.sent()
    assert reply.src == US and reply.dst == PEER
    assert (reply[UDP].sport, reply[UDP].dport) == (7, 40000)
    assert bytes(reply[UDP].payload) == b"hello there"
    assert reply[UDP].len == 8 + 11
    assert reply[UDP].chksum != 0 and scapy_ok(reply)
    c = w.counters
    assert c["InDatagrams"] == 1 and c["OutDatagrams"] == 1


def test_zero_checksum_accepted() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    w.inject(udp_from_peer(5000, b"nochecksum", chksum=0))
    assert r.payloads == [b"nochecksum"]
    assert w.counters.drops["bad_checksum"] == 0


def test_bad_checksum_dropped_and_counted() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    good = IP(bytes(udp_from_peer(5000, b"data")))
    w.inject(udp_from_peer(5000, b"data", chksum=(good[UDP].chksum ^ 0x0100)))
    assert r.payloads == []
    c = w.counters
    assert c.drops["bad_checksum"] == 1 and c["InErrors"] == 1 and c["InCsumErrors"] == 1
    assert w.sent() == []  # no port unreachable for a corrupt datagram


def test_link_verified_checksum_is_not_recomputed() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    good = IP(bytes(udp_from_peer(5000, b"data")))
    bad = udp_from_peer(5000, b"data", chksum=(good[UDP].chksum ^ 0x0100))
    w.inject(bad, flags=RX_CSUM_VERIFIED)
    assert r.payloads == [b"data"]  # the link vouched for it, as a NIC with rx offload does
    w.inject(bad)
    assert r.payloads == [b"data"]


# --- lengths -----------------------------------------------------------------------------


def test_ip_payload_shorter_than_header_is_truncated() -> None:
    w = Wire()
    w.open(local_addr=("0.0.0.0", 5000))
    w.inject(raw_ip(b"\x13\x88\x13\x88\x00"))
    assert w.counters.drops["truncated"] == 1
    assert w.sent() == []


def test_udp_length_longer_than_payload_dropped() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    seg = bytearray(build_udp(ip4(PEER), ip4(US), 40000, 5000, b"abcd"))
    seg[4:6] = (len(seg) + 4).to_bytes(2, "big")  # claims 4 bytes more than arrived
    w.inject(raw_ip(bytes(seg)))
    assert r.payloads == []
    assert w.counters.drops["bad_length"] == 1 and w.counters["InErrors"] == 1
    assert w.sent() == []


def test_udp_length_below_header_dropped() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    seg = bytearray(build_udp(ip4(PEER), ip4(US), 40000, 5000, b"abcd", with_checksum=False))
    seg[4:6] = (7).to_bytes(2, "big")
    w.inject(raw_ip(bytes(seg)))
    assert r.payloads == [] and w.counters.drops["bad_length"] == 1


def test_trailing_bytes_after_udp_length_ignored() -> None:
    # RFC 768: the length field delimits the datagram; the checksum covers only that much.
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    seg = bytes(build_udp(ip4(PEER), ip4(US), 40000, 5000, b"real"))
    w.inject(raw_ip(seg + b"PADDING!"))
    assert r.payloads == [b"real"]


def test_lying_length_that_cuts_payload_fails_checksum() -> None:
    # A length field smaller than what the sender checksummed: the checksum (computed over
    # the full datagram by scapy) no longer matches over the shorter span.
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    pkt = IP(bytes(udp_from_peer(5000, b"abcdefgh")))
    raw = bytearray(bytes(pkt))
    raw[24:26] = (8 + 4).to_bytes(2, "big")
    w.inject(bytes(raw))
    assert r.payloads == [] and w.counters.drops["bad_checksum"] == 1


# --- demultiplexing ----------------------------------------------------------------------


def test_demux_precedence_connected_then_address_then_wildcard() -> None:
    w = Wire()
    w.iface.add_address(ip4("10.0.0.2"), 24)
    wild = w.open(local_addr=("0.0.0.0", 5000), reuse_port=True)
    spec = w.open(local_addr=(US, 5000), reuse_port=True)
    conn = w.open(local_addr=(US, 5000), remote_addr=(PEER, 6000), reuse_port=True)

    w.inject(udp_from_peer(5000, b"to-connected", sport=6000))
    w.inject(udp_from_peer(5000, b"to-specific", sport=6001))
    w.inject(udp_from_peer(5000, b"to-wildcard", sport=6000, dst="10.0.0.2"))
    assert conn.payloads == [b"to-connected"]
    assert spec.payloads == [b"to-specific"]
    assert wild.payloads == [b"to-wildcard"]


def test_connected_endpoint_filters_other_peers() -> None:
    w = Wire()
    conn = w.open(remote_addr=(PEER, 6000))
    port = conn.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
    w.inject(udp_from_peer(port, b"wrong peer port", sport=6001))
    assert conn.payloads == []
    assert w.counters["NoPorts"] == 1
    w.inject(udp_from_peer(port, b"right", sport=6000))
    assert conn.payloads == [b"right"]


def test_specific_binding_does_not_see_other_local_address() -> None:
    w = Wire()
    w.iface.add_address(ip4("10.0.0.2"), 24)
    spec = w.open(local_addr=(US, 5000))
    w.inject(udp_from_peer(5000, b"x", dst="10.0.0.2"))
    assert spec.payloads == []
    assert w.counters["NoPorts"] == 1


def test_reuse_port_group_spreads_by_peer_and_stays_stable() -> None:
    w = Wire()
    group = [w.open(local_addr=("0.0.0.0", 5000), reuse_port=True) for _ in range(4)]
    for sport in range(41000, 41040):
        for _ in range(2):
            w.inject(udp_from_peer(5000, sport.to_bytes(2, "big"), sport=sport))
    got = [set(r.payloads) for r in group]
    assert sum(len(r.payloads) for r in group) == 80
    assert sum(1 for g in got if g) >= 2  # spread over the group
    for r in group:  # one peer always lands on the same member
        assert all(r.payloads.count(p) == 2 for p in set(r.payloads))


# --- broadcast ---------------------------------------------------------------------------


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255"])
def test_broadcast_reaches_wildcard_and_broadcast_bound(dst: str) -> None:
    w = Wire()
    wild = w.open(local_addr=("0.0.0.0", 67), reuse_port=True)
    bcast = w.open(local_addr=(dst, 67), reuse_port=True)
    unicast = w.open(local_addr=(US, 67), reuse_port=True)
    w.inject(udp_from_peer(67, b"discover", dst=dst))
    assert wild.payloads == [b"discover"]
    assert bcast.payloads == [b"discover"]
    assert unicast.payloads == []  # bound to a unicast address: not for it (as Linux)


def test_broadcast_to_closed_port_sends_no_icmp() -> None:
    w = Wire()
    w.inject(udp_from_peer(9999, b"anyone?", dst="10.0.0.255"))
    w.inject(udp_from_peer(9999, b"anyone?", dst="255.255.255.255"))
    assert w.sent() == []
    c = w.counters
    assert c["NoPorts"] == 0 and c["IgnoredMulti"] == 2


# --- port unreachable --------------------------------------------------------------------


def test_closed_port_answers_icmp_port_unreachable() -> None:
    w = Wire()
    w.inject(udp_from_peer(9999, b"knock knock", sport=41234))
    (icmp,) = w.sent()
    assert icmp.src == US and icmp.dst == PEER
    assert icmp[ICMP].type == 3 and icmp[ICMP].code == 3
    quoted = icmp[IPerror]
    assert quoted.src == PEER and quoted.dst == US
    assert icmp[UDPerror].sport == 41234 and icmp[UDPerror].dport == 9999
    assert w.counters["NoPorts"] == 1 and w.counters.drops["no_port"] == 1


def test_reporter_double_sees_code_3_and_never_broadcasts() -> None:
    reporter = RecordingReporter()
    w = Wire(["ipv4", "udp", reporter])
    w.inject(udp_from_peer(9999, b"x"))
    w.inject(udp_from_peer(9999, b"x", dst="10.0.0.255"))
    assert [(dg.dst, code) for dg, code in reporter.unreachable] == [(ip4(US), 3)]
    dg, _ = reporter.unreachable[0]
    assert bytes(dg.payload)[2:4] == (9999).to_bytes(2, "big")


def test_port_open_after_close_is_unreachable_again() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    w.inject(udp_from_peer(5000))
    assert w.sent() == []
    assert r.transport is not None
    r.transport.close()
    w.inject(udp_from_peer(5000))
    (icmp,) = w.sent()
    assert icmp[ICMP].type == 3 and icmp[ICMP].code == 3
    assert r.payloads == [b"ping"] and r.lost == [None]


# --- fuzz --------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80), st.booleans())
def test_fuzz_receive_never_raises(segment: bytes, verified: bool) -> None:
    w = FUZZ_WIRE
    before = w.stack.counter("stack").drops["internal_error"]
    w.inject(raw_ip(segment), flags=RX_CSUM_VERIFIED if verified else 0)
    assert w.stack.counter("stack").drops["internal_error"] == before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1400), st.integers(1, 0xFFFF), st.booleans())
def test_fuzz_valid_datagrams_delivered_intact(payload: bytes, sport: int, zero: bool) -> None:
    w = FUZZ_WIRE
    FUZZ_SINK.datagrams.clear()
    w.inject(udp_from_peer(5353, payload, sport=sport, chksum=0 if zero else None))
    assert FUZZ_SINK.datagrams == [(payload, (PEER, sport))]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1472))
def test_fuzz_what_we_send_scapy_verifies(payload: bytes) -> None:
    w = FUZZ_WIRE
    assert FUZZ_SINK.transport is not None
    FUZZ_SINK.transport.sendto(payload, (PEER, 9))
    (pkt,) = w.sent()
    assert bytes(pkt[UDP].payload) == payload and pkt[UDP].len == 8 + len(payload)
    assert pkt[UDP].chksum != 0 and scapy_ok(pkt)


def test_we_send_computed_zero_checksum_as_ffff() -> None:
    w = Wire(["ipv4", "udp"])
    r = w.open(local_addr=("0.0.0.0", 1000))
    seg0 = build_udp(ip4(US), ip4(PEER), 1000, 2000, b"\x00\x00", with_checksum=False)
    c0 = checksum(bytes(seg0), pseudo_header_sum(ip4(US), ip4(PEER), 17, len(seg0)))
    assert r.transport is not None
    r.transport.sendto(c0.to_bytes(2, "big"), (PEER, 2000))
    (pkt,) = w.sent()
    assert pkt[UDP].chksum == 0xFFFF and scapy_ok(pkt)


FUZZ_WIRE = Wire(["ipv4", "udp"])
FUZZ_SINK = FUZZ_WIRE.open(local_addr=("0.0.0.0", 5353))


def test_raw_scapy_payload_types() -> None:
    # Raw() payloads and an explicit length equal to the real one behave like the default.
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    w.inject(IP(src=PEER, dst=US) / UDP(sport=1, dport=5000, len=8 + 3) / Raw(b"xyz"))
    assert r.payloads == [b"xyz"]

"""UDP (RFC 768, RFC 1122 4.1): checksum and length handling, sockets, ICMP errors."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import BROADCAST_MAC, Testbench

pytestmark = requires("udp")

QUIET = 0.3
PORT = 5000


def _bound(dut: DUT, port: int = PORT) -> int:
    s = dut.socket("udp")
    dut.bind(s, "0.0.0.0", port)
    return s


def _raw_udp(tb: Testbench, dut: DUT, payload: bytes, *, ulen: int | None = None,
             chksum: int | None = None, sport: int = 4000, dport: int = PORT) -> bytes:
    """IPv4+UDP bytes with a chosen UDP length and checksum (computed over ``ulen`` bytes)."""
    from layers.wire.addr import ip4
    from layers.wire.udp import udp_checksum

    body = (sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
            + (ulen if ulen is not None else 8 + len(payload)).to_bytes(2, "big")
            + b"\x00\x00" + payload)
    if chksum is None:
        covered = body[: ulen] if ulen is not None and ulen <= len(body) else body
        covered_b = bytearray(covered)
        csum = udp_checksum(ip4(tb.ip), ip4(dut.ip), bytes(covered_b))
        chksum = csum
    body = body[:6] + chksum.to_bytes(2, "big") + body[8:]
    ip = IP(src=tb.ip, dst=dut.ip, proto=17) / Raw(body)
    return bytes(ip)


def test_datagram_reaches_bound_socket(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(tb.udp_to(PORT, b"hello socket", sport=4001))
    got = dut.recvfrom(s)
    assert got == (b"hello socket", (tb.ip, 4001))


def test_empty_datagram_is_delivered(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(tb.udp_to(PORT, b"", sport=4002))
    assert dut.recvfrom(s) == (b"", (tb.ip, 4002))


def test_sent_datagram_is_well_formed(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut, 5001)
    dut.sendto(s, b"from the DUT", tb.ip, 6001)
    got = tb.expect(IP(src=dut.ip, dst=tb.ip, proto=17) / UDP(sport=5001, dport=6001))
    udp = got[UDP]
    assert udp.len == 8 + len(b"from the DUT")
    assert bytes(udp.payload) == b"from the DUT"
    assert udp.chksum != 0, "RFC 1122 4.1.3.4: checksums SHOULD be sent"
    check = IP(src=dut.ip, dst=tb.ip) / UDP(sport=5001, dport=6001) / Raw(b"from the DUT")
    assert IP(bytes(check))[UDP].chksum == udp.chksum


def test_unbound_sender_uses_an_ephemeral_port(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    dut.sendto(s, b"eph", tb.ip, 6002)
    got = tb.expect(IP(src=dut.ip) / UDP(dport=6002))
    assert got[UDP].sport >= 1024
    # the port stays the socket's: a reply to it is received
    tb.send(tb.udp_to(got[UDP].sport, b"answer", sport=6002))
    assert dut.recvfrom(s) == (b"answer", (tb.ip, 6002))


def test_bad_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    good = _raw_udp(tb, dut, b"checksummed")
    bad = bytearray(good)
    bad[26] ^= 0x5A  # flip bits in the checksum field
    tb.send_raw_ip(bytes(bad))
    assert dut.recvfrom(s, timeout=QUIET) is None
    tb.expect_none(IP(src=dut.ip) / ICMP(), 0.0)
    tb.send_raw_ip(good)
    assert dut.recvfrom(s) == (b"checksummed", (tb.ip, 4000))


def test_zero_checksum_is_accepted(dut: DUT, tb: Testbench) -> None:
    # RFC 768: an all-zero checksum means the sender computed none
    s = _bound(dut)
    tb.send_raw_ip(_raw_udp(tb, dut, b"no checksum", chksum=0))
    assert dut.recvfrom(s) == (b"no checksum", (tb.ip, 4000))


def test_corrupted_payload_is_dropped(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    raw = bytearray(_raw_udp(tb, dut, b"payload to corrupt"))
    raw[-1] ^= 0x01
    tb.send_raw_ip(bytes(raw))
    assert dut.recvfrom(s, timeout=QUIET) is None


def test_length_longer_than_datagram_is_dropped(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send_raw_ip(_raw_udp(tb, dut, b"short", ulen=8 + 5 + 10, chksum=0))
    assert dut.recvfrom(s, timeout=QUIET) is None
    tb.send(tb.udp_to(PORT, b"fine"))
    assert dut.recvfrom(s) is not None


@pytest.mark.parametrize("ulen", [0, 7])
def test_length_below_header_is_dropped(dut: DUT, tb: Testbench, ulen: int) -> None:
    s = _bound(dut)
    tb.send_raw_ip(_raw_udp(tb, dut, b"junk", ulen=ulen, chksum=0))
    assert dut.recvfrom(s, timeout=QUIET) is None
    tb.send(tb.udp_to(PORT, b"fine"))
    assert dut.recvfrom(s) is not None


@requires("udp.short_length_trim")
def test_length_shorter_than_datagram_trims_it(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send_raw_ip(_raw_udp(tb, dut, b"keep|drop", ulen=8 + 4))
    assert dut.recvfrom(s) == (b"keep", (tb.ip, 4000))


@requires("udp.port_unreachable", "icmp")
def test_closed_port_gets_port_unreachable(dut: DUT, tb: Testbench) -> None:
    tb.send(tb.udp_to(9, b"nobody", sport=4003))
    tb.expect(IP(src=dut.ip) / ICMP(type=3, code=3) / IPerror(dst=dut.ip)
              / UDPerror(sport=4003, dport=9))


@requires("udp.port_unreachable", "icmp")
def test_closed_socket_port_becomes_unreachable(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut, 5002)
    tb.send(tb.udp_to(5002, b"open"))
    assert dut.recvfrom(s) is not None
    dut.close(s)
    tb.send(tb.udp_to(5002, b"closed now", sport=4004))
    tb.expect(IP(src=dut.ip) / ICMP(type=3, code=3) / IPerror() / UDPerror(dport=5002))


def test_connected_socket_filters_other_peers(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut, 5003)
    dut.connect(s, tb.ip, 6003)
    tb.send(tb.udp_to(5003, b"wrong port", sport=6999))
    tb.send(tb.udp_to(5003, b"the peer", sport=6003))
    assert dut.recvfrom(s) == (b"the peer", (tb.ip, 6003))
    assert dut.recvfrom(s, timeout=QUIET) is None


def test_connected_socket_sends_to_its_peer(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    dut.connect(s, tb.ip, 6004)
    dut.send(s, b"connected send")
    got = tb.expect(IP(src=dut.ip, dst=tb.ip) / UDP(dport=6004))
    assert bytes(got[UDP].payload) == b"connected send"


@requires("udp.icmp_errors", "icmp")
def test_port_unreachable_refuses_a_connected_socket(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    dut.connect(s, tb.ip, 6005)
    dut.send(s, b"is anyone there")
    sent = tb.expect(IP(src=dut.ip) / UDP(dport=6005))
    quote = bytes(sent[IP])[:28]
    tb.send(IP() / ICMP(type=3, code=3) / Raw(quote))
    with pytest.raises(OSError) as exc:
        dut.recvfrom(s, timeout=1.0)
    assert exc.value.errno == errno.ECONNREFUSED


def test_port_unreachable_is_not_reported_to_unconnected_socket(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut, 5004)
    dut.sendto(s, b"fire and forget", tb.ip, 6006)
    sent = tb.expect(IP(src=dut.ip) / UDP(dport=6006))
    tb.send(IP() / ICMP(type=3, code=3) / Raw(bytes(sent[IP])[:28]))
    assert dut.recvfrom(s, timeout=QUIET) is None
    tb.send(tb.udp_to(5004, b"still works"))
    assert dut.recvfrom(s) == (b"still works", (tb.ip, 40000))


@pytest.mark.parametrize("dst", ["subnet", "limited"])
def test_broadcast_reaches_wildcard_socket(dut: DUT, tb: Testbench, dst: str) -> None:
    s = _bound(dut, 5005)
    addr = dut.broadcast if dst == "subnet" else "255.255.255.255"
    tb.send(Ether(dst=BROADCAST_MAC) / IP(dst=addr) / UDP(sport=4005, dport=5005) / Raw(b"all"))
    assert dut.recvfrom(s) == (b"all", (tb.ip, 4005))


def test_broadcast_send_needs_permission(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    with pytest.raises(OSError) as exc:
        dut.sendto(s, b"to everyone", dut.broadcast, 6007)
    assert exc.value.errno == errno.EACCES
    dut.setsockopt(s, "broadcast", 1)
    dut.sendto(s, b"to everyone", dut.broadcast, 6007)
    got = tb.expect(IP(src=dut.ip, dst=dut.broadcast) / UDP(dport=6007))
    assert got[Ether].dst == BROADCAST_MAC


def test_port_in_use(dut: DUT, tb: Testbench) -> None:
    _bound(dut, 5006)
    s2 = dut.socket("udp")
    with pytest.raises(OSError) as exc:
        dut.bind(s2, "0.0.0.0", 5006)
    assert exc.value.errno == errno.EADDRINUSE

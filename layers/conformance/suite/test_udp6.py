"""UDP over IPv6 (RFC 768 with RFC 8200 8.1): the pseudo-header checksum, mandatory in IPv6,
sockets on ``::``, ICMPv6 port unreachable, and the path MTU a packet too big sets."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
    UDPerror,
)
from scapy.packet import Raw

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench

pytestmark = requires("udp6")

QUIET = 0.3
PORT = 5006


def _bound(dut: DUT, port: int = PORT) -> int:
    s = dut.socket("udp6")
    dut.bind(s, "::", port)
    return s


def test_datagram_reaches_socket_bound_to_any(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(IPv6() / UDP(sport=4001, dport=PORT) / Raw(b"hello v6 socket"))
    assert dut.recvfrom(s) == (b"hello v6 socket", (tb.ip6, 4001))


def test_sent_datagram_has_the_pseudo_header_checksum(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut, 5007)
    dut.sendto(s, b"from the DUT over IPv6", tb.ip6, 6001)
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6, nh=17) / UDP(sport=5007, dport=6001))
    udp = got[UDP]
    assert udp.len == 8 + len(b"from the DUT over IPv6")
    assert bytes(udp.payload) == b"from the DUT over IPv6"
    assert udp.chksum != 0, "RFC 8200 8.1: the UDP checksum is mandatory over IPv6"
    rebuilt = IPv6(src=tb.dut_ip6, dst=tb.ip6) / UDP(sport=5007, dport=6001) / Raw(
        b"from the DUT over IPv6")
    assert IPv6(bytes(rebuilt))[UDP].chksum == udp.chksum


def test_echo_through_a_socket(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(IPv6() / UDP(sport=4002, dport=PORT) / Raw(b"ping"))
    got = dut.recvfrom(s)
    assert got is not None
    data, peer = got
    dut.sendto(s, data.upper(), *peer)
    back = tb.expect(IPv6(src=tb.dut_ip6) / UDP(sport=PORT, dport=4002))
    assert bytes(back[UDP].payload) == b"PING"


def test_zero_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(IPv6() / UDP(sport=4003, dport=PORT, chksum=0) / Raw(b"no checksum"))
    tb.send(IPv6() / UDP(sport=4003, dport=PORT) / Raw(b"with checksum"))
    assert dut.recvfrom(s) == (b"with checksum", (tb.ip6, 4003)), (
        "RFC 8200 8.1: a zero UDP checksum over IPv6 is discarded")
    assert dut.recvfrom(s, timeout=QUIET) is None


def test_bad_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    s = _bound(dut)
    tb.send(IPv6() / UDP(sport=4004, dport=PORT, chksum=0x1234) / Raw(b"bad"))
    tb.send(IPv6() / UDP(sport=4004, dport=PORT) / Raw(b"good"))
    assert dut.recvfrom(s) == (b"good", (tb.ip6, 4004))
    assert dut.recvfrom(s, timeout=QUIET) is None


@requires("udp6.port_unreachable")
def test_closed_port_gets_icmpv6_port_unreachable(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / UDP(sport=4005, dport=9) / Raw(b"anyone?"))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6DestUnreach(code=4)
                    / IPerror6(src=tb.ip6, dst=tb.dut_ip6) / UDPerror(sport=4005, dport=9),
                    what="ICMPv6 port unreachable quoting the datagram")
    assert bytes(got[UDPerror].payload).startswith(b"anyone?")


@requires("udp6.port_unreachable")
def test_zero_checksum_to_a_closed_port_gets_no_error(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / UDP(sport=4006, dport=9, chksum=0) / Raw(b"invalid"))
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6DestUnreach(), QUIET,
                   what="an error about a datagram that was never valid")


@requires("udp6.icmp_errors")
def test_port_unreachable_reaches_a_connected_socket(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp6")
    dut.bind(s, "::", 5008)
    dut.connect(s, tb.ip6, 7007)
    dut.send(s, b"are you there")
    sent = tb.expect(IPv6(src=tb.dut_ip6) / UDP(sport=5008, dport=7007))
    quote = bytes(sent[IPv6])
    tb.send(IPv6() / ICMPv6DestUnreach(code=4) / Raw(quote))
    try:
        got = dut.recv(s, timeout=1.0)
    except OSError as exc:
        assert exc.errno == errno.ECONNREFUSED
    else:
        raise AssertionError(f"recv returned {got!r}, not ECONNREFUSED")


@requires("icmpv6.packet_too_big", "ipv6.fragmentation")
@pytest.mark.parametrize("mtu", [1280, 1000], ids=["mtu1280", "mtu1000-ignored"])
def test_packet_too_big_fragments_later_datagrams(dut: DUT, tb: Testbench, mtu: int) -> None:
    s = _bound(dut, 5009)
    data = bytes(range(256)) * 5 + b"x" * 120  # 1400 bytes: 1448 with headers, fits 1500
    dut.sendto(s, data, tb.ip6, 6009)
    first = tb.expect(IPv6(src=tb.dut_ip6) / UDP(sport=5009, dport=6009))
    assert IPv6ExtHdrFragment not in first, "1448 bytes fit the link whole"
    tb.send(IPv6() / ICMPv6PacketTooBig(mtu=mtu) / Raw(bytes(first[IPv6])[:1232]))
    tb.sleep(0.05)
    dut.sendto(s, data, tb.ip6, 6009)
    got = tb.expect_datagram6(IPv6(src=tb.dut_ip6) / UDP(sport=5009, dport=6009), timeout=2.0)
    assert bytes(got[UDP].payload) == data
    if mtu >= 1280:
        assert got.fragments == 2 and max(got.sizes) <= 1280, (
            f"after packet too big (MTU {mtu}) the datagram goes in fragments: {got.sizes}")
    else:  # RFC 8201 4: never below 1280; Linux ignores such a message, as we do
        assert got.fragments == 1, f"packet too big below 1280 is ignored: {got.sizes}"

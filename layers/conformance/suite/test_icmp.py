"""ICMP echo and errors (RFC 792, RFC 1122 3.2.2, RFC 1812 4.3.2)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import BROADCAST_MAC, Testbench

#: how long "no answer" is waited for
QUIET = 0.3


def _checksum_ok(layer: Packet) -> bool:
    """Whether a decoded layer's checksum is what Scapy computes for its bytes."""
    clone = layer.copy()
    clone.chksum = None
    rebuilt = type(layer)(bytes(clone))
    return bool(rebuilt.chksum == layer.chksum)


# --- echo ---------------------------------------------------------------------------------


@requires("icmp.echo")
def test_echo_reply_keeps_payload(dut: DUT, tb: Testbench) -> None:
    payload = bytes(range(256)) * 2
    reply = tb.ping(payload, ident=0x1234, seq=7)
    assert bytes(reply[ICMP].payload) == payload
    assert reply[ICMP].code == 0


@requires("icmp.echo")
def test_echo_reply_addresses_and_checksums(dut: DUT, tb: Testbench) -> None:
    reply = tb.ping(b"abcdefgh" * 7)
    assert reply[Ether].src == tb.dut_mac and reply[Ether].dst == tb.mac
    assert reply[IP].src == dut.ip and reply[IP].dst == tb.ip
    assert _checksum_ok(reply[IP])
    assert _checksum_ok(reply[ICMP])
    assert reply[IP].ttl > 0


@requires("icmp.echo")
@pytest.mark.parametrize("size", [0, 1, 56, 1472])
def test_echo_sizes(dut: DUT, tb: Testbench, size: int) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    reply = tb.ping(payload, seq=size)
    assert bytes(reply[ICMP].payload) == payload


@requires("icmp.echo")
@pytest.mark.parametrize(("ident", "seq"), [(0, 0), (0xFFFF, 0xFFFF)])
def test_echo_identifier_and_sequence_kept(dut: DUT, tb: Testbench, ident: int, seq: int) -> None:
    tb.ping(b"edge", ident=ident, seq=seq)


@requires("icmp.echo", "ipv4.reassembly", "ipv4.fragmentation")
def test_echo_fragmented_request_gets_whole_reply(dut: DUT, tb: Testbench) -> None:
    payload = bytes((i * 13) & 0xFF for i in range(4000))
    request = IP(src=tb.ip, dst=dut.ip, id=0x2222) / ICMP(type=8, id=9, seq=1) / Raw(payload)
    for frag in fragment(request, fragsize=1480):
        tb.send(frag)
    reply = tb.expect_datagram(IP(src=dut.ip, dst=tb.ip) / ICMP(type=0, id=9, seq=1),
                               timeout=2.0)
    assert bytes(reply[ICMP].payload) == payload
    assert reply.fragments >= 3, "a 4028-byte reply must be fragmented on a 1500-byte link"


@requires("icmp.echo")
def test_echo_reply_keeps_tos(dut: DUT, tb: Testbench) -> None:
    reply = tb.ping(b"tos", tos=0x10)
    assert reply[IP].tos == 0x10


@requires("icmp.echo")
def test_echo_with_bad_checksum_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.send(IP() / ICMP(type=8, id=1, seq=1, chksum=0xDEAD) / Raw(b"bad"))
    tb.expect_none(IP(src=dut.ip) / ICMP(), QUIET)
    tb.ping(b"still alive")


@requires("icmp.echo_ignore_broadcasts")
def test_echo_to_broadcast_is_not_answered(dut: DUT, tb: Testbench) -> None:
    tb.send(Ether(dst=BROADCAST_MAC) / IP(dst=dut.broadcast) / ICMP(type=8, id=5, seq=1))
    tb.expect_none(IP(src=dut.ip) / ICMP(type=0), QUIET)


@requires("icmp.echo")
@pytest.mark.parametrize("icmp_type", [0, 42], ids=["echo-reply", "unknown-type"])
def test_no_answer_to_replies_and_unknown_types(dut: DUT, tb: Testbench, icmp_type: int) -> None:
    tb.send(IP() / ICMP(type=icmp_type, id=3, seq=3) / Raw(b"zz"))
    tb.expect_none(IP(src=dut.ip), QUIET)
    tb.ping()


@requires("icmp.echo")
def test_echo_replies_are_not_rate_limited(dut: DUT, tb: Testbench) -> None:
    for seq in range(30):
        tb.send(IP() / ICMP(type=8, id=77, seq=seq) / Raw(b"burst"))
    replies = tb.collect(IP(src=dut.ip) / ICMP(type=0, id=77), 1.0)
    assert sorted(r[ICMP].seq for r in replies) == list(range(30))


# --- errors -------------------------------------------------------------------------------


@requires("udp.port_unreachable", "icmp")
def test_port_unreachable_quotes_the_datagram(dut: DUT, tb: Testbench) -> None:
    tb.send(IP(id=0x4242) / UDP(sport=40001, dport=9) / Raw(b"discard me"))
    err = tb.expect(IP(src=dut.ip, dst=tb.ip, proto=1) / ICMP(type=3, code=3)
                    / IPerror(src=tb.ip, dst=dut.ip, id=0x4242, proto=17)
                    / UDPerror(sport=40001, dport=9))
    assert _checksum_ok(err[ICMP])
    # RFC 1812 4.3.2.3: as much of the original as fits in 576 bytes; at least 8 (RFC 792)
    assert bytes(err[UDPerror].payload).startswith(b"discard me")


@requires("udp.port_unreachable", "icmp")
def test_error_is_at_most_576_bytes(dut: DUT, tb: Testbench) -> None:
    tb.send(IP() / UDP(sport=40002, dport=9) / Raw(bytes(1400)))
    err = tb.expect(IP(src=dut.ip) / ICMP(type=3, code=3) / IPerror() / UDPerror(dport=9))
    assert err[IP].len <= 576
    assert len(bytes(err[ICMP].payload)) >= 28


@requires("icmp.protocol_unreachable")
def test_protocol_unreachable(dut: DUT, tb: Testbench) -> None:
    proto = dut.unclaimed_protocol()  # 253 unless a composed plugin uses it
    tb.send(IP(proto=proto, id=0x5151) / Raw(b"experimental protocol"))
    err = tb.expect(IP(src=dut.ip, dst=tb.ip) / ICMP(type=3, code=2)
                    / IPerror(src=tb.ip, dst=dut.ip, proto=proto, id=0x5151))
    assert bytes(err[IPerror].payload).startswith(b"experimen")


@requires("udp.port_unreachable", "icmp.error_rules")
@pytest.mark.parametrize("dst", ["subnet", "limited"])
def test_no_port_unreachable_for_broadcast(dut: DUT, tb: Testbench, dst: str) -> None:
    addr = dut.broadcast if dst == "subnet" else "255.255.255.255"
    tb.send(Ether(dst=BROADCAST_MAC) / IP(dst=addr) / UDP(sport=40003, dport=9) / Raw(b"b"))
    tb.expect_none(IP(src=dut.ip) / ICMP(type=3), QUIET)


@requires("icmp.protocol_unreachable", "icmp.error_rules")
def test_no_protocol_unreachable_for_broadcast(dut: DUT, tb: Testbench) -> None:
    proto = dut.unclaimed_protocol()
    tb.send(Ether(dst=BROADCAST_MAC) / IP(dst=dut.broadcast, proto=proto) / Raw(b"b"))
    tb.expect_none(IP(src=dut.ip) / ICMP(type=3), QUIET)


@requires("udp.port_unreachable", "icmp.error_rules")
def test_no_error_for_unicast_datagram_in_link_broadcast(dut: DUT, tb: Testbench) -> None:
    # RFC 1122 3.2.2: no error about a datagram that arrived as a link-layer broadcast
    tb.send(Ether(dst=BROADCAST_MAC) / IP(dst=dut.ip) / UDP(sport=40004, dport=9) / Raw(b"b"))
    tb.expect_none(IP(src=dut.ip) / ICMP(type=3), QUIET)


@requires("udp.port_unreachable", "icmp.rate_limit")
def test_errors_are_rate_limited_per_destination(dut: DUT, tb: Testbench) -> None:
    for i in range(20):
        tb.send(IP() / UDP(sport=41000 + i, dport=9) / Raw(b"r"))
    errors = tb.collect(IP(src=dut.ip) / ICMP(type=3, code=3), 0.5)
    assert 1 <= len(errors) <= 7, f"{len(errors)} errors for 20 datagrams in a burst"

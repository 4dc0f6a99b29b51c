"""TCP over IPv6 (RFC 9293 with RFC 8200 8.1): handshakes, data, resets and checksums over
the IPv6 pseudo-header, the MSS an IPv6 header leaves, and packet too big (RFC 8201) making
the DUT's segments fit the smaller path."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.packet import Packet, Raw

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import TCPPeer, listen, open_active, open_passive, option, payload_of
from layers.conformance.testbench import Testbench

pytestmark = requires("tcp6")

QUIET = 0.3
PORT = 8086


def _checksum_ok(pkt: Packet) -> bool:
    """Whether the TCP checksum of ``pkt`` is the one over the IPv6 pseudo-header."""
    ip6 = pkt[IPv6]
    tcp = TCP(bytes(ip6.payload)[: ip6.plen])
    tcp.chksum = None  # scapy computes it again, over the IPv6 pseudo-header
    rebuilt = IPv6(bytes(IPv6(src=ip6.src, dst=ip6.dst, nh=6) / tcp))
    return bool(rebuilt[TCP].chksum == pkt[TCP].chksum)


def test_passive_open_over_ipv6(dut: DUT, tb: Testbench) -> None:
    lsock = listen(dut, PORT, family=6)
    peer = TCPPeer(tb, dut, dut_port=PORT, family=6)
    synack = peer.connect()
    assert synack[IPv6].src == tb.dut_ip6 and synack[IPv6].dst == tb.ip6
    assert option(synack, "MSS") == 1440, "MSS = 1500 - 40 (IPv6) - 20 (TCP)"
    assert _checksum_ok(synack), "the SYN-ACK's checksum covers the IPv6 pseudo-header"
    got = dut.accept(lsock)
    assert got is not None and got[1] == (tb.ip6, peer.port)


def test_active_open_over_ipv6(dut: DUT, tb: Testbench) -> None:
    peer, s, syn = open_active(dut, tb, port=9096, family=6)
    assert syn[IPv6].src == tb.dut_ip6
    assert option(syn, "MSS") == 1440
    assert _checksum_ok(syn)
    dut.send(s, b"hello from the DUT")
    assert peer.recv_data(18) == b"hello from the DUT"


def test_data_both_ways(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_passive(dut, tb, port=PORT, family=6)
    peer.send("PA", b"request over IPv6")
    assert dut.recv_exactly(s, 17) == b"request over IPv6"
    peer.expect("A", ack=1 + 17, what="ACK of our data")
    dut.send(s, b"response over IPv6")
    seg = peer.expect("A", data=True, what="the DUT's data")
    assert payload_of(seg) == b"response over IPv6"
    assert _checksum_ok(seg)


def test_syn_to_closed_port_gets_a_reset(dut: DUT, tb: Testbench) -> None:
    peer = TCPPeer(tb, dut, dut_port=9, family=6)
    peer.send("S", options=peer.syn_options())
    rst = peer.expect("RA", ack=1, what="RST for a closed port")
    assert rst[TCP].seq == 0
    assert _checksum_ok(rst)


def test_ack_to_closed_port_gets_a_reset_from_its_ack(dut: DUT, tb: Testbench) -> None:
    peer = TCPPeer(tb, dut, dut_port=9, family=6)
    tb.send(IPv6() / TCP(sport=peer.port, dport=9, flags="A", seq=1000, ack=123456))
    rst = peer.expect("R", what="RST for an ACK to a closed port (RFC 9293 3.10.7.1)")
    assert rst[TCP].seq == 123456, "a reset takes its sequence number from the ACK field"


def test_syn_with_bad_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    listen(dut, PORT, family=6)
    peer = TCPPeer(tb, dut, dut_port=PORT, family=6)
    bad = peer.segment("S", options=peer.syn_options())
    bad[TCP].chksum = 0x1234
    tb.send(bad)
    peer.expect_none("SA", window=QUIET, what="SYN-ACK to a SYN with a bad checksum")
    peer.connect()


def test_data_with_bad_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_passive(dut, tb, port=PORT, family=6)
    bad = peer.segment("PA", b"corrupted")
    bad[TCP].chksum = 0x1234
    tb.send(bad)
    assert dut.recv(s, timeout=QUIET) is None
    peer.send("PA", b"intact")
    assert dut.recv_exactly(s, 6) == b"intact"


@requires("icmpv6.packet_too_big")
@pytest.mark.parametrize("mtu", [1280, 1000], ids=["mtu1280", "mtu1000-ignored"])
def test_packet_too_big_makes_segments_fit(dut: DUT, tb: Testbench, mtu: int) -> None:
    peer, s, _ = open_passive(dut, tb, port=PORT, family=6)
    data = bytes(range(256)) * 24  # 6144 bytes: several full-sized segments
    dut.send(s, data)
    first = tb.expect(peer.template(), where=lambda p: len(payload_of(p)) > 0,
                      what="the first data segment")
    assert 40 + first[IPv6].plen == 1500, "full-sized before packet too big"
    tb.drain(settle=0.05)  # the rest of the first flight: we never acknowledge it
    tb.send(IPv6() / ICMPv6PacketTooBig(mtu=mtu) / Raw(bytes(first[IPv6])[:1232]))
    out = b""
    sizes: list[int] = []
    while len(out) < len(data):
        before = peer.rcv_nxt
        seg = peer.expect("A", data=True, timeout=3.0, what=f"data ({len(out)} bytes so far)")
        sizes.append(40 + seg[IPv6].plen)
        if peer.rcv_nxt != before:  # in order (a copy of the first flight is not)
            out += payload_of(seg)
        peer.send("A")
    assert out == data
    if mtu >= 1280:
        assert max(sizes) == 1280, (
            f"after packet too big (MTU {mtu}) every segment fits 1280 bytes and full ones "
            f"fill it: {sizes}")
    else:  # RFC 8201 4: never below 1280; Linux ignores such a message, and so do we
        assert max(sizes) == 1500, f"packet too big below 1280 is ignored: {sizes}"

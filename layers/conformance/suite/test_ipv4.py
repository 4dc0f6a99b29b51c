"""IPv4 for a host (RFC 791, RFC 1122 3.2.1 and 3.3.2): header validation, TTL, addressing,
fragment reassembly and fragmentation."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from layers.conformance import requires, settings
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench, arrival

pytestmark = requires("ipv4", "icmp.echo")

QUIET = 0.3


def _echo(ident: int, payload: bytes = b"ipv4 conformance", **ip: Any) -> IP:
    return IP(**ip) / ICMP(type=8, id=ident, seq=1) / Raw(payload)


def _reply(dut: DUT, tb: Testbench, ident: int) -> IP:
    return IP(src=dut.ip, dst=tb.ip) / ICMP(type=0, id=ident)


def _bytes(pkt: IP) -> bytearray:
    return bytearray(bytes(pkt))


def _fix_checksum(raw: bytearray) -> bytearray:
    from layers.wire.checksum import checksum

    hlen = (raw[0] & 0xF) * 4
    raw[10:12] = b"\x00\x00"
    raw[10:12] = checksum(bytes(raw[:hlen])).to_bytes(2, "big")
    return raw


# --- header validation: each bad header is dropped silently; the DUT stays alive ----------


def test_bad_header_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    raw = _bytes(_echo(21, src=tb.ip, dst=dut.ip))
    raw[10] ^= 0xFF
    tb.send_raw_ip(bytes(raw))
    tb.expect_none(_reply(dut, tb, 21), QUIET)
    tb.ping()


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_bad_version_is_dropped(dut: DUT, tb: Testbench, version: int) -> None:
    raw = _bytes(_echo(22, src=tb.ip, dst=dut.ip))
    raw[0] = (version << 4) | 5
    tb.send_raw_ip(bytes(_fix_checksum(raw)))
    tb.expect_none(_reply(dut, tb, 22), QUIET)
    tb.ping()


@pytest.mark.parametrize("ihl", [0, 4])
def test_ihl_below_five_is_dropped(dut: DUT, tb: Testbench, ihl: int) -> None:
    raw = _bytes(_echo(23, src=tb.ip, dst=dut.ip))
    raw[0] = 0x40 | ihl
    tb.send_raw_ip(bytes(raw))
    tb.expect_none(_reply(dut, tb, 23), QUIET)
    tb.ping()


def test_ihl_past_the_packet_is_dropped(dut: DUT, tb: Testbench) -> None:
    raw = _bytes(IP(src=tb.ip, dst=dut.ip, proto=1) / Raw(b"\x08\x00"))
    raw[0] = 0x4F  # 60-byte header in a 22-byte packet
    tb.send_raw_ip(bytes(_fix_checksum(raw)[:22]))
    tb.expect_none(IP(src=dut.ip), QUIET)
    tb.ping()


@pytest.mark.parametrize("delta", [1, 100], ids=["one-byte-lie", "hundred-byte-lie"])
def test_total_length_longer_than_frame_is_dropped(dut: DUT, tb: Testbench, delta: int) -> None:
    raw = _bytes(_echo(24, src=tb.ip, dst=dut.ip))
    raw[2:4] = (len(raw) + delta).to_bytes(2, "big")
    tb.send_raw_ip(bytes(_fix_checksum(raw)))
    tb.expect_none(_reply(dut, tb, 24), QUIET)
    tb.ping()


def test_total_length_shorter_than_header_is_dropped(dut: DUT, tb: Testbench) -> None:
    raw = _bytes(_echo(25, src=tb.ip, dst=dut.ip))
    raw[2:4] = (12).to_bytes(2, "big")
    tb.send_raw_ip(bytes(_fix_checksum(raw)))
    tb.expect_none(_reply(dut, tb, 25), QUIET)
    tb.ping()


def test_truncated_header_is_dropped(dut: DUT, tb: Testbench) -> None:
    tb.send_raw_ip(bytes(_echo(26, src=tb.ip, dst=dut.ip))[:12])
    tb.expect_none(IP(src=dut.ip), QUIET)
    tb.ping()


def test_bytes_past_total_length_are_ignored(dut: DUT, tb: Testbench) -> None:
    # Ethernet padding (or junk) after the datagram is not part of it (RFC 791 total length)
    raw = bytes(_echo(27, b"exact payload", src=tb.ip, dst=dut.ip))
    tb.send_raw_ip(raw + b"\xAA" * 30)
    reply = tb.expect(_reply(dut, tb, 27))
    assert bytes(reply[ICMP].payload) == b"exact payload"


@requires("ipv4.options")
def test_header_with_options_is_accepted(dut: DUT, tb: Testbench) -> None:
    reply = tb.ping(b"with options", options=[b"\x01\x01\x01\x00"])  # NOP NOP NOP EOL
    assert bytes(reply[ICMP].payload) == b"with options"


# --- TTL and addressing ------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [1, 0])
def test_low_ttl_is_delivered_to_a_host(dut: DUT, tb: Testbench, ttl: int) -> None:
    # RFC 1122 3.2.1.7: a host MUST NOT discard a datagram because its TTL is below 2
    reply = tb.ping(b"ttl", ttl=ttl)
    assert reply[IP].ttl > 1, "the reply starts with a fresh TTL, not the request's"


def test_datagram_for_another_host_is_not_answered(dut: DUT, tb: Testbench) -> None:
    # a host does not forward (RFC 1122 3.3.1.6) and does not answer for others
    tb.send(_echo(28, dst="10.51.0.99"))
    tb.expect_none(IP(src=dut.ip), QUIET)
    tb.expect_none(IP(dst="10.51.0.99"), 0.0)


@pytest.mark.parametrize("src", ["127.0.0.1", "224.0.0.5", "255.255.255.255", "0.0.0.0"])
def test_martian_source_is_dropped(dut: DUT, tb: Testbench, src: str) -> None:
    tb.send(_echo(29, src=src))
    tb.expect_none(IP(src=dut.ip) / ICMP(), QUIET)
    tb.ping()


def test_dont_fragment_request_is_answered(dut: DUT, tb: Testbench) -> None:
    tb.ping(b"df", flags="DF")


# --- reassembly --------------------------------------------------------------------------


def _fragments(tb: Testbench, dut: DUT, ident: int, size: int, fragsize: int) -> list[IP]:
    payload = bytes((i * 31 + ident) & 0xFF for i in range(size))
    datagram = IP(src=tb.ip, dst=dut.ip, id=ident) / ICMP(type=8, id=ident, seq=1) / Raw(payload)
    return list(fragment(datagram, fragsize=fragsize))


@requires("ipv4.reassembly")
@pytest.mark.parametrize("order", ["in-order", "reverse", "middle-first", "shuffled"])
def test_reassembly_orders(dut: DUT, tb: Testbench, order: str) -> None:
    frags = _fragments(tb, dut, 0x3100, 3000, 800)
    assert len(frags) == 4
    if order == "reverse":
        frags.reverse()
    elif order == "middle-first":
        frags = [frags[2], frags[1], frags[3], frags[0]]
    elif order == "shuffled":
        random.Random(7).shuffle(frags)
    tb.send(*frags)
    reply = tb.expect_datagram(_reply(dut, tb, 0x3100), timeout=2.0)
    assert len(bytes(reply[ICMP].payload)) == 3000


@requires("ipv4.reassembly")
def test_reassembly_of_eight_byte_fragments(dut: DUT, tb: Testbench) -> None:
    frags = _fragments(tb, dut, 0x3200, 56, 8)
    assert len(frags) == 8
    tb.send(*frags)
    reply = tb.expect_datagram(_reply(dut, tb, 0x3200))
    assert len(bytes(reply[ICMP].payload)) == 56


@requires("ipv4.reassembly")
def test_duplicate_fragment_is_tolerated(dut: DUT, tb: Testbench) -> None:
    frags = _fragments(tb, dut, 0x3300, 1992, 1000)
    assert len(frags) == 2
    tb.send(frags[0], frags[0], frags[1])
    reply = tb.expect_datagram(_reply(dut, tb, 0x3300))
    assert len(bytes(reply[ICMP].payload)) == 1992
    tb.expect_none(_reply(dut, tb, 0x3300), QUIET, what="one reply, not two")


@requires("ipv4.reassembly_overlap_drop")
def test_overlapping_fragment_discards_the_datagram(dut: DUT, tb: Testbench) -> None:
    ident = 0x3400
    payload = bytes(range(48))
    whole = bytes(ICMP(type=8, id=ident, seq=1) / Raw(payload))  # 56 bytes
    first = IP(id=ident, proto=1, flags="MF", frag=0) / Raw(whole[:24])
    overlap = IP(id=ident, proto=1, flags="MF", frag=2) / Raw(b"\xEE" * 24)  # bytes 16..40
    last = IP(id=ident, proto=1, flags=0, frag=3) / Raw(whole[24:])
    tb.send(first, overlap, last)
    tb.expect_none(_reply(dut, tb, ident), QUIET)
    tb.ping()


@requires("ipv4.reassembly_timeout")
@settings({"ipv4.reasm_timeout": 1})
def test_reassembly_timeout_sends_time_exceeded(dut: DUT, tb: Testbench) -> None:
    frags = _fragments(tb, dut, 0x3500, 2000, 1000)
    tb.send(frags[0])
    sent = tb.now
    err = tb.expect(IP(src=dut.ip, dst=tb.ip) / ICMP(type=11, code=1)
                    / IPerror(src=tb.ip, dst=dut.ip, id=0x3500, frag=0), timeout=3.0)
    assert 0.9 <= arrival(err) - sent <= 2.5, arrival(err) - sent


@requires("ipv4.reassembly_timeout")
@settings({"ipv4.reasm_timeout": 1})
def test_no_time_exceeded_without_the_first_fragment(dut: DUT, tb: Testbench) -> None:
    frags = _fragments(tb, dut, 0x3600, 2000, 1000)
    tb.send(frags[1])
    tb.expect_none(IP(src=dut.ip) / ICMP(), 2.5)


@requires("ipv4.reassembly_timeout", "icmp.error_rules")
@settings({"ipv4.reasm_timeout": 1})
def test_no_time_exceeded_about_an_icmp_error(dut: DUT, tb: Testbench) -> None:
    # the first fragment of an ICMP error message expires: no error about an error
    quoted = bytes(IP(src=dut.ip, dst=tb.ip, proto=17) / UDP(sport=5, dport=6))
    error = IP(src=tb.ip, dst=dut.ip, id=0x3700) / ICMP(type=3, code=3) / Raw(quoted + bytes(600))
    frags = list(fragment(error, fragsize=320))
    tb.send(frags[0])
    tb.expect_none(IP(src=dut.ip) / ICMP(type=11), 2.5)


@requires("ipv4.reassembly", "udp")
def test_reassembled_datagram_reaches_a_socket(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    dut.bind(s, "0.0.0.0", 5353)
    payload = bytes((i * 5) & 0xFF for i in range(8000))
    datagram = IP(src=tb.ip, dst=dut.ip, id=0x3800) / UDP(sport=4242, dport=5353) / Raw(payload)
    frags = list(fragment(datagram, fragsize=1480))
    random.Random(3).shuffle(frags)
    tb.send(*frags)
    got = dut.recvfrom(s, timeout=2.0)
    assert got is not None, "the reassembled datagram did not reach the socket"
    assert got[0] == payload and got[1] == (tb.ip, 4242)


# --- fragmentation on send ----------------------------------------------------------------


@requires("ipv4.fragmentation", "udp")
def test_large_datagram_is_fragmented(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("udp")
    payload = bytes((i * 3) & 0xFF for i in range(5000))
    dut.sendto(s, payload, tb.ip, 6000)
    frags = tb.collect(IP(src=dut.ip, dst=tb.ip, proto=17), 1.0)
    assert len(frags) >= 4
    for f in frags:
        assert len(f[IP]) <= 1500
        if f[IP].flags.MF:
            assert (f[IP].len - f[IP].ihl * 4) % 8 == 0
    assert len({f[IP].id for f in frags}) == 1
    assert sum(1 for f in frags if not f[IP].flags.MF) == 1
    # reassemble with the testbench and check the datagram, checksum included
    from layers.conformance.testbench import _reassemble

    whole = _reassemble(frags)
    assert whole is not None
    udp = whole[UDP]
    assert bytes(udp.payload) == payload and udp.dport == 6000
    check = IP(src=dut.ip, dst=tb.ip) / UDP(sport=udp.sport, dport=6000) / Raw(payload)
    assert IP(bytes(check))[UDP].chksum == udp.chksum


def test_ether_type_and_mac(dut: DUT, tb: Testbench) -> None:
    reply = tb.ping()
    assert reply[Ether].type == 0x0800

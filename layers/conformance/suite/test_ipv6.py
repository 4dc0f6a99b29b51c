"""IPv6 (RFC 8200) and ICMPv6 (RFC 4443): echo, fragments, extension headers, errors.

Every test here requires an IPv6 capability, so the DUT gets its IPv6 address
(``2001:db8:51::1/64``) and its link-local one; the testbench answers neighbour solicitations.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    ICMPv6Unknown,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.packet import Raw

from layers.conformance import requires, settings
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench, arrival

pytestmark = requires("ipv6", "icmpv6")

QUIET = 0.3
#: an echo payload needing three 1232-byte fragments, whose reply the DUT must fragment too
BIG = bytes(range(256)) * 12  # 3072 bytes


def _echo(payload: bytes = b"ext", seq: int = 1) -> ICMPv6EchoRequest:
    return ICMPv6EchoRequest(id=0x6C6C, seq=seq, data=payload)


def _reply(tb: Testbench, seq: int = 1) -> IPv6:
    return IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6EchoReply(id=0x6C6C, seq=seq)


# --- echo --------------------------------------------------------------------------------
@requires("icmpv6.echo")
def test_echo_request_is_answered(dut: DUT, tb: Testbench) -> None:
    got = tb.ping6(b"hello over IPv6", ident=0x1234, seq=7)
    reply = got[ICMPv6EchoReply]
    assert reply.data == b"hello over IPv6"
    assert got[IPv6].nh == 58
    # the checksum covers the IPv6 pseudo-header: scapy recomputes it from the addresses
    rebuilt = IPv6(src=got[IPv6].src, dst=got[IPv6].dst) / ICMPv6EchoReply(
        id=reply.id, seq=reply.seq, data=reply.data)
    assert IPv6(bytes(rebuilt))[ICMPv6EchoReply].cksum == reply.cksum


@requires("icmpv6.echo")
def test_echo_to_link_local_is_answered_from_it(dut: DUT, tb: Testbench) -> None:
    got = tb.ping6(b"link-local", src=tb.ll, dst=tb.dut_ll)
    assert got[IPv6].src == tb.dut_ll


@requires("icmpv6.echo")
def test_echo_to_all_nodes_is_answered_from_a_unicast_address(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6(dst="ff02::1") / _echo(b"all nodes", seq=20))
    got = tb.expect(IPv6(dst=tb.ip6) / ICMPv6EchoReply(id=0x6C6C, seq=20),
                    what="echo reply to all-nodes (Linux answers: echo_ignore_multicast=0)")
    assert not ipaddress.IPv6Address(got[IPv6].src).is_multicast


@requires("icmpv6.echo")
def test_echo_to_a_group_not_joined_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6(dst="ff02::1:2345") / _echo(b"not a member", seq=21))
    tb.expect_none(IPv6() / ICMPv6EchoReply(seq=21), QUIET,
                   what="a reply to a multicast group the DUT never joined")


@requires("icmpv6.echo")
def test_unknown_informational_message_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / ICMPv6Unknown(type=200, code=0, msgbody=b"\x00" * 8))
    tb.expect_none(IPv6(src=tb.dut_ip6), QUIET, what="an answer to type 200 (RFC 4443 2.4 b)",
                   where=lambda p: ICMPv6ParamProblem in p or ICMPv6EchoReply in p)
    tb.ping6(b"still here", ident=0x6C6C, seq=22)


@requires("icmpv6.echo")
def test_echo_with_bad_checksum_is_dropped(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / ICMPv6EchoRequest(id=1, seq=1, data=b"bad", cksum=0x1234))
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(id=1), QUIET,
                   what="reply to a request with a bad checksum")
    tb.ping6(b"good", ident=1, seq=2)


@requires("icmpv6.echo", "ipv6.reassembly", "ipv6.fragmentation")
def test_large_echo_in_fragments_gets_a_fragmented_reply(dut: DUT, tb: Testbench) -> None:
    tb.send(*tb.fragments6(IPv6() / _echo(BIG)))
    got = tb.expect_datagram6(_reply(tb), timeout=2.0)
    assert got[ICMPv6EchoReply].data == BIG
    assert got.fragments >= 3, "a 3080-byte reply cannot cross a 1500-byte link whole"
    assert max(got.sizes) <= 1500, f"fragments larger than the link MTU: {got.sizes}"


# --- fragments ---------------------------------------------------------------------------
@requires("icmpv6.echo", "ipv6.reassembly")
def test_fragments_out_of_order_are_reassembled(dut: DUT, tb: Testbench) -> None:
    payload = b"out of order " * 100  # 1300 bytes: three 512-byte fragments
    tb.send(*tb.fragments6(IPv6() / _echo(payload, seq=2), size=512, order=(2, 0, 1)))
    got = tb.expect_datagram6(_reply(tb, seq=2), timeout=2.0)
    assert got[ICMPv6EchoReply].data == payload


@requires("icmpv6.echo", "ipv6.reassembly_overlap_drop")
def test_overlapping_fragments_discard_the_packet(dut: DUT, tb: Testbench) -> None:
    payload = b"overlap " * 100  # 800 bytes + 8 of ICMPv6 header
    first, rest = tb.fragments6(IPv6() / _echo(payload, seq=3), size=512, ident=0x0B0B)
    # a second piece starting 8 bytes into the first one's data, completing the packet
    raw = bytes(first[Raw].load) + bytes(rest[Raw].load)
    overlap = IPv6(src=tb.ip6, dst=tb.dut_ip6) / IPv6ExtHdrFragment(
        nh=58, offset=504 // 8, m=0, id=0x0B0B) / Raw(raw[504:])
    tb.send(first, overlap)
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(seq=3), QUIET,
                   what="reply to a packet rebuilt from overlapping fragments (RFC 5722)")
    # the rule is about that packet only: a new one with another identification goes through
    tb.send(*tb.fragments6(IPv6() / _echo(payload, seq=4), size=512, ident=0x0C0C))
    tb.expect_datagram6(_reply(tb, seq=4), timeout=2.0)


@requires("icmpv6.echo", "ipv6.atomic_fragment")
def test_atomic_fragment_is_processed_as_a_whole_packet(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / IPv6ExtHdrFragment(nh=58, offset=0, m=0, id=0xA70) / _echo(b"atomic", 5))
    got = tb.expect(_reply(tb, seq=5), timeout=1.0, what="reply to an atomic fragment")
    assert got[ICMPv6EchoReply].data == b"atomic"
    assert IPv6ExtHdrFragment not in got, "the reply needs no fragment header"


@requires("icmpv6.echo", "ipv6.reassembly")
def test_duplicate_fragment_does_not_spoil_reassembly(dut: DUT, tb: Testbench) -> None:
    payload = b"twice " * 150
    first, rest = tb.fragments6(IPv6() / _echo(payload, seq=15), size=512, ident=0xD0D0)
    tb.send(first, first, rest)
    got = tb.expect_datagram6(_reply(tb, seq=15), timeout=2.0)
    assert got[ICMPv6EchoReply].data == payload


@requires("ipv6.reassembly", "icmpv6.parameter_problem")
def test_fragment_not_a_multiple_of_8_gets_parameter_problem(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / IPv6ExtHdrFragment(nh=58, offset=0, m=1, id=0xBAD8)
            / Raw(bytes(_echo(b"odd", seq=16))[:8] + b"x" * 13))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=0),
                    what="parameter problem about a fragment of 21 bytes with M set")
    assert got[ICMPv6ParamProblem].ptr == 4, "RFC 8200 4.5: pointing at the payload length"


@requires("ipv6.reassembly_timeout")
@settings({"ipv6.reasm_timeout": 1})
def test_incomplete_packet_times_out_with_time_exceeded(dut: DUT, tb: Testbench) -> None:
    first, _ = tb.fragments6(IPv6() / _echo(b"never whole " * 60, seq=14), size=512,
                             ident=0x7E7E)
    start = tb.now
    tb.send(first)
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6TimeExceeded(code=1)
                    / IPerror6(src=tb.ip6, dst=tb.dut_ip6), timeout=3.0,
                    what="time exceeded code 1 (fragment reassembly time exceeded)")
    assert arrival(got) - start >= 0.9, "not before the reassembly timeout"
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(seq=14), QUIET)


# --- extension headers -------------------------------------------------------------------
@requires("icmpv6.echo", "ipv6.extension_headers")
def test_hop_by_hop_with_padn_is_accepted(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / IPv6ExtHdrHopByHop(nh=58, options=[PadN(optdata=b"\x00" * 4)])
            / _echo(b"hbh", 6))
    tb.expect(_reply(tb, seq=6), what="reply through a hop-by-hop header")


@requires("icmpv6.echo", "ipv6.extension_headers")
def test_destination_options_with_padn_are_accepted(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / IPv6ExtHdrDestOpt(nh=58, options=[PadN(optdata=b"\x00" * 4)])
            / _echo(b"dst", 7))
    tb.expect(_reply(tb, seq=7), what="reply through a destination options header")


def _unknown_option(otype: int) -> IPv6ExtHdrDestOpt:
    # 2 + 4 bytes of option after the 2-byte header: 8 bytes, no padding needed
    return IPv6ExtHdrDestOpt(nh=58, options=[HBHOptUnknown(otype=otype, optdata=b"\x00" * 4)])


@requires("icmpv6.echo", "ipv6.extension_headers")
def test_unknown_option_00_is_skipped(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / _unknown_option(0x1E) / _echo(b"skip", 8))
    tb.expect(_reply(tb, seq=8), what="reply despite an unknown option of type 00xxxxxx")


@requires("icmpv6.echo", "ipv6.extension_headers")
def test_unknown_option_01_discards_silently(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / _unknown_option(0x5E) / _echo(b"discard", 9))
    tb.expect_none(IPv6(src=tb.dut_ip6), QUIET, what="anything about a 01xxxxxx option",
                   where=lambda p: ICMPv6EchoReply in p or ICMPv6ParamProblem in p)


@requires("icmpv6.echo", "ipv6.extension_headers", "icmpv6.parameter_problem")
@pytest.mark.parametrize("otype", [0x9E, 0xDE], ids=["10", "11"])
def test_unknown_option_10_11_report_parameter_problem(
    dut: DUT, tb: Testbench, otype: int
) -> None:
    tb.send(IPv6() / _unknown_option(otype) / _echo(b"report", 10))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=2),
                    what="parameter problem code 2 (unrecognized option)")
    assert got[ICMPv6ParamProblem].ptr == 42, "the pointer names the option's type byte"
    assert got[IPerror6].dst == tb.dut_ip6
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(seq=10), QUIET,
                   what="the packet itself is discarded")


@requires("icmpv6.echo", "ipv6.extension_headers")
def test_unknown_option_11_to_multicast_is_not_reported(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6(dst="ff02::1") / _unknown_option(0xDE) / _echo(b"mcast", 11))
    tb.expect_none(IPv6(src=None), QUIET, what="a reply or error for a multicast packet",
                   where=lambda p: ICMPv6EchoReply in p or ICMPv6ParamProblem in p)


@requires("ipv6.extension_headers", "icmpv6.parameter_problem")
def test_hop_by_hop_not_first_gets_parameter_problem(dut: DUT, tb: Testbench) -> None:
    tb.send(IPv6() / IPv6ExtHdrDestOpt(nh=0, options=[PadN(optdata=b"\x00" * 4)])
            / IPv6ExtHdrHopByHop(nh=58, options=[PadN(optdata=b"\x00" * 4)])
            / _echo(b"late hbh", 17))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=1),
                    what="parameter problem code 1: hop-by-hop only right after the header")
    assert got[ICMPv6ParamProblem].ptr == 40, "the next header byte that names it"
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(seq=17), QUIET)


@requires("icmpv6.echo", "ipv6.routing_type0_refused", "icmpv6.parameter_problem")
def test_routing_header_type0_is_refused(dut: DUT, tb: Testbench) -> None:
    rh0 = IPv6ExtHdrRouting(nh=58, type=0, segleft=1, addresses=[tb.other_ip6])
    tb.send(IPv6() / rh0 / _echo(b"rh0", 12))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=0),
                    what="parameter problem about the routing header (RFC 5095)")
    assert got[ICMPv6ParamProblem].ptr == 42, "the pointer names the routing type"
    tb.expect_none(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(seq=12), QUIET)


@requires("icmpv6.echo", "ipv6.extension_headers")
def test_routing_header_with_no_segments_left_is_skipped(dut: DUT, tb: Testbench) -> None:
    rh0 = IPv6ExtHdrRouting(nh=58, type=0, segleft=0, addresses=[tb.other_ip6])
    tb.send(IPv6() / rh0 / _echo(b"rh0 done", 13))
    tb.expect(_reply(tb, seq=13), what="reply: a routing header with nothing left to do")


@requires("icmpv6.parameter_problem")
def test_unknown_next_header_gets_parameter_problem(dut: DUT, tb: Testbench) -> None:
    proto = dut.unclaimed_protocol()
    tb.send(IPv6(nh=proto) / Raw(b"\x00" * 16))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=1),
                    what="parameter problem code 1 (unrecognized next header)")
    assert got[ICMPv6ParamProblem].ptr == 6, "the pointer names the next header field"


@requires("icmpv6.parameter_problem", "ipv6.extension_headers")
def test_unknown_next_header_after_an_extension_points_at_it(dut: DUT, tb: Testbench) -> None:
    proto = dut.unclaimed_protocol()
    tb.send(IPv6() / IPv6ExtHdrDestOpt(nh=proto, options=[PadN(optdata=b"\x00" * 4)])
            / Raw(b"\x00" * 16))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6ParamProblem(code=1),
                    what="parameter problem code 1 (unrecognized next header)")
    assert got[ICMPv6ParamProblem].ptr == 40, "the destination options' next header byte"

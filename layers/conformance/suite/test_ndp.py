"""Neighbor Discovery for IPv6 (RFC 4861): solicitations answered, neighbours resolved, the
advertisement's link-layer address used, unreachability detection probes.

The testbench's automatic answers to solicitations are off where a test plays the neighbour
itself (``tb.answer_ndp = False``).
"""

from __future__ import annotations

import ipaddress

from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from layers.conformance import requires, settings
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench, arrival

pytestmark = requires("ndp")

QUIET = 0.3


def solicited_node(address: str) -> str:
    low = ipaddress.IPv6Address(address).packed[13:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low))


def multicast_mac(group: str) -> str:
    return "33:33:" + ":".join(f"{b:02x}" for b in ipaddress.IPv6Address(group).packed[12:])


def _ns(tb: Testbench, target: str, *, src: str | None = None, dst: str | None = None,
        hlim: int = 255, lladdr: bool = True) -> Packet:
    """A neighbour solicitation from the testbench (to the target's solicited-node group)."""
    group = dst or solicited_node(target)
    eth_dst = multicast_mac(group) if ipaddress.IPv6Address(group).is_multicast else tb.dut_mac
    pkt = (Ether(src=tb.mac, dst=eth_dst) / IPv6(src=src or tb.ip6, dst=group, hlim=hlim)
           / ICMPv6ND_NS(tgt=target))
    if lladdr:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=tb.mac)
    return pkt


@requires("ndp.advertise")
def test_solicitation_for_our_address_gets_a_solicited_advertisement(
    dut: DUT, tb: Testbench
) -> None:
    tb.send(_ns(tb, tb.dut_ip6))
    got = tb.expect(IPv6(dst=tb.ip6) / ICMPv6ND_NA(tgt=tb.dut_ip6),
                    what="neighbour advertisement")
    na = got[ICMPv6ND_NA]
    assert got[IPv6].hlim == 255, "RFC 4861 7.1.2: ND messages go out with hop limit 255"
    assert got[Ether].dst == tb.mac, "the answer goes to the solicitor's link-layer address"
    assert na.S == 1, "an answer to a solicitation has the solicited flag"
    assert na.O == 1, "an answer for our own address overrides (RFC 4861 7.2.4)"
    assert na.R == 0, "a host is not a router"
    assert ICMPv6NDOptDstLLAddr in got, "the target link-layer address option is included"
    assert got[ICMPv6NDOptDstLLAddr].lladdr == tb.dut_mac


@requires("ndp.advertise")
def test_unicast_solicitation_is_answered(dut: DUT, tb: Testbench) -> None:
    tb.send(_ns(tb, tb.dut_ip6, dst=tb.dut_ip6))
    got = tb.expect(IPv6(dst=tb.ip6) / ICMPv6ND_NA(tgt=tb.dut_ip6), what="advertisement")
    assert got[ICMPv6ND_NA].S == 1


@requires("ndp.advertise")
def test_solicitation_for_the_link_local_address_is_answered(dut: DUT, tb: Testbench) -> None:
    tb.send(_ns(tb, tb.dut_ll, src=tb.ll))
    got = tb.expect(IPv6(src=tb.dut_ll, dst=tb.ll) / ICMPv6ND_NA(tgt=tb.dut_ll),
                    what="advertisement for the link-local address")
    assert got[ICMPv6NDOptDstLLAddr].lladdr == tb.dut_mac


@requires("ndp.advertise")
def test_duplicate_address_probe_is_answered_to_all_nodes(dut: DUT, tb: Testbench) -> None:
    tb.send(_ns(tb, tb.dut_ip6, src="::", lladdr=False))
    got = tb.expect(IPv6(dst="ff02::1") / ICMPv6ND_NA(tgt=tb.dut_ip6),
                    what="advertisement to all-nodes (RFC 4861 7.2.4)")
    assert got[ICMPv6ND_NA].S == 0, "an answer to all-nodes is not solicited"
    assert got[Ether].dst == "33:33:00:00:00:01"


@requires("ndp.advertise")
def test_solicitation_for_another_address_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.send(_ns(tb, tb.other_ip6))
    tb.expect_none(IPv6() / ICMPv6ND_NA(), QUIET, what="advertisement for someone else")


@requires("ndp.validation")
def test_solicitation_with_hop_limit_below_255_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.send(_ns(tb, tb.dut_ip6, hlim=64))
    tb.expect_none(IPv6() / ICMPv6ND_NA(), QUIET,
                   what="advertisement to a solicitation that crossed a router")


@requires("ndp.resolve", "icmpv6.echo")
def test_dut_resolves_by_multicast_solicitation(dut: DUT, tb: Testbench) -> None:
    tb.answer_ndp = False
    tb.send(IPv6() / ICMPv6EchoRequest(id=5, seq=1, data=b"resolve me"))
    group = solicited_node(tb.ip6)
    ns = tb.expect(IPv6(dst=group) / ICMPv6ND_NS(tgt=tb.ip6),
                   what="solicitation to the solicited-node group")
    assert ns[Ether].dst == multicast_mac(group)
    assert ns[IPv6].hlim == 255
    assert ICMPv6NDOptSrcLLAddr in ns and ns[ICMPv6NDOptSrcLLAddr].lladdr == tb.dut_mac
    # answer for the testbench's address with another MAC: the DUT must use the one given
    na = (Ether(src=tb.other_mac, dst=tb.dut_mac) / IPv6(src=tb.ip6, dst=ns[IPv6].src, hlim=255)
          / ICMPv6ND_NA(tgt=tb.ip6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=tb.other_mac))
    tb.send(na)
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6EchoReply(id=5, seq=1),
                    what="the echo reply, once resolved")
    assert got[Ether].dst == tb.other_mac, "the advertisement's target link-layer address"


@requires("ndp.resolve", "icmpv6.echo")
def test_solicitation_source_link_layer_address_is_learned(dut: DUT, tb: Testbench) -> None:
    tb.answer_ndp = False
    tb.send(_ns(tb, tb.dut_ip6))
    tb.expect(IPv6() / ICMPv6ND_NA(tgt=tb.dut_ip6), what="advertisement")
    tb.send(IPv6() / ICMPv6EchoRequest(id=6, seq=1, data=b"known"))
    got = tb.expect(IPv6(src=tb.dut_ip6, dst=tb.ip6) / ICMPv6EchoReply(id=6, seq=1),
                    what="echo reply without a new resolution")
    assert got[Ether].dst == tb.mac
    assert not [p for p in tb.skipped if ICMPv6ND_NS in p and p[IPv6].dst.startswith("ff02")], (
        "the solicitor's source link-layer option was learned: no multicast solicitation")


@requires("ndp.resolve", "icmpv6.echo")
def test_override_advertisement_updates_the_link_layer_address(
    dut: DUT, tb: Testbench
) -> None:
    tb.ping6(b"first", ident=7, seq=1)  # resolved through the automatic answer
    na = (Ether(src=tb.other_mac, dst="33:33:00:00:00:01")
          / IPv6(src=tb.ip6, dst="ff02::1", hlim=255)
          / ICMPv6ND_NA(tgt=tb.ip6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=tb.other_mac))
    tb.send(na)
    got = tb.ping6(b"second", ident=7, seq=2)
    assert got[Ether].dst == tb.other_mac, "an unsolicited override NA replaces the address"


@requires("ndp.nud", "icmpv6.echo")
@settings({"ndp.delay_first_probe": 1})
def test_stale_entry_in_use_is_probed_by_unicast(dut: DUT, tb: Testbench) -> None:
    tb.answer_ndp = False
    tb.send(_ns(tb, tb.dut_ip6))  # the DUT learns us as stale (RFC 4861 7.2.3)
    tb.expect(IPv6() / ICMPv6ND_NA(tgt=tb.dut_ip6), what="advertisement")
    tb.send(IPv6() / ICMPv6EchoRequest(id=8, seq=1, data=b"stale"))
    sent = arrival(tb.expect(IPv6(src=tb.dut_ip6) / ICMPv6EchoReply(id=8), what="echo reply"))
    probe = tb.expect(IPv6(dst=tb.ip6) / ICMPv6ND_NS(tgt=tb.ip6), timeout=3.0,
                      what="unicast probe after the delay (RFC 4861 7.3.3)")
    assert probe[Ether].dst == tb.mac, "the probe is unicast to the cached address"
    assert arrival(probe) - sent >= 0.5, "not before the delay"


@requires("ndp.validation", "icmpv6.echo")
def test_solicited_advertisement_to_multicast_is_ignored(dut: DUT, tb: Testbench) -> None:
    tb.ping6(b"first", ident=9, seq=1)
    na = (Ether(src=tb.other_mac, dst="33:33:00:00:00:01")
          / IPv6(src=tb.ip6, dst="ff02::1", hlim=255)
          / ICMPv6ND_NA(tgt=tb.ip6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=tb.other_mac))
    tb.send(na)
    got = tb.ping6(b"second", ident=9, seq=2)
    assert got[Ether].dst == tb.mac, (
        "RFC 4861 7.1.2: an advertisement to a multicast address with S set is invalid")


@requires("ndp.validation")
def test_solicitation_with_nonzero_code_is_ignored(dut: DUT, tb: Testbench) -> None:
    ns = _ns(tb, tb.dut_ip6)
    ns[ICMPv6ND_NS].code = 1
    tb.send(ns)
    tb.expect_none(IPv6() / ICMPv6ND_NA(), QUIET, what="advertisement to an NS with code 1")

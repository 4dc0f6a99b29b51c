"""ARP (RFC 826, RFC 1122 2.3.2, RFC 5227 announcements and probes)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from layers.conformance import requires, settings
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import BROADCAST_MAC, ZERO_MAC, Testbench, arrival
from layers.wire.addr import ip4, mac

pytestmark = requires("arp")

QUIET = 0.3
#: the testbench's second hardware address (its "new NIC")
NEW_MAC = "02:00:00:51:00:99"


def _who_has(tb: Testbench, target: str) -> ARP:
    return ARP(op=1, psrc=tb.dut_ip, hwsrc=tb.dut_mac, pdst=target)


def test_reply_to_broadcast_request(dut: DUT, tb: Testbench) -> None:
    tb.send(tb.arp_request())
    reply = tb.expect(ARP(op=2), what="ARP reply")
    assert reply[Ether].src == tb.dut_mac and reply[Ether].dst == tb.mac
    assert reply[Ether].type == 0x0806
    arp = reply[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
    assert arp.hwsrc == tb.dut_mac and arp.psrc == dut.ip
    assert arp.hwdst == tb.mac and arp.pdst == tb.ip


def test_reply_to_unicast_request(dut: DUT, tb: Testbench) -> None:
    # unicast requests are how neighbours re-confirm an entry (RFC 1122 2.3.2.1)
    tb.send(Ether(dst=tb.dut_mac) / ARP(op=1, pdst=dut.ip))
    tb.expect(ARP(op=2, psrc=dut.ip, hwsrc=tb.dut_mac, pdst=tb.ip))


def test_no_reply_for_another_address(dut: DUT, tb: Testbench) -> None:
    tb.send(tb.arp_request("10.51.0.77"))
    tb.expect_none(ARP(op=2), QUIET)


@pytest.mark.parametrize(
    "fields",
    [{"hwtype": 6}, {"ptype": 0x86DD}, {"op": 3}],
    ids=["hardware-type", "protocol-type", "opcode"],
)
def test_malformed_request_is_ignored(dut: DUT, tb: Testbench, fields: dict[str, Any]) -> None:
    tb.send(Ether(dst=BROADCAST_MAC) / ARP(**{"op": 1, "pdst": dut.ip, **fields}))
    tb.expect_none(ARP(op=2), QUIET)
    tb.send(tb.arp_request())
    tb.expect(ARP(op=2, psrc=dut.ip), what="a well-formed request is still answered")


def test_probe_from_unspecified_sender_is_answered(dut: DUT, tb: Testbench) -> None:
    # RFC 5227 2.1.1: a probe asks "who-has X" from 0.0.0.0; the owner of X answers
    tb.send(Ether(dst=BROADCAST_MAC) / ARP(op=1, psrc="0.0.0.0", hwdst=ZERO_MAC, pdst=dut.ip))
    reply = tb.expect(ARP(op=2, psrc=dut.ip, hwsrc=tb.dut_mac))
    assert reply[Ether].dst in (tb.mac, BROADCAST_MAC)


@requires("udp")
def test_resolves_before_sending(dut: DUT, tb: Testbench) -> None:
    tb.answer_arp = False
    s = dut.socket("udp")
    dut.sendto(s, b"needs ARP first", tb.ip, 7000)
    req = tb.expect(_who_has(tb, tb.ip), what="ARP request for the testbench")
    assert req[Ether].dst == BROADCAST_MAC and req[Ether].src == tb.dut_mac
    assert req[ARP].hwtype == 1 and req[ARP].ptype == 0x0800


@requires("arp.queue", "udp")
def test_queued_datagram_is_sent_after_reply(dut: DUT, tb: Testbench) -> None:
    tb.answer_arp = False
    s = dut.socket("udp")
    dut.sendto(s, b"waited for ARP", tb.ip, 7001)
    req = tb.expect(_who_has(tb, tb.ip))
    tb.send(Ether(dst=tb.dut_mac) / ARP(op=2, hwsrc=tb.mac, psrc=tb.ip, hwdst=req[ARP].hwsrc,
                                        pdst=dut.ip))
    got = tb.expect(IP(src=dut.ip, dst=tb.ip) / UDP(dport=7001))
    assert got[Ether].dst == tb.mac
    assert bytes(got[UDP].payload) == b"waited for ARP"


@requires("arp.retransmit", "udp")
@settings({"arp.timeout": 0.3, "arp.retries": 3})
def test_request_is_retried_then_given_up(dut: DUT, tb: Testbench) -> None:
    tb.answer_arp = False
    s = dut.socket("udp")
    dut.sendto(s, b"nobody home", tb.ip, 7002)
    requests = tb.collect(_who_has(tb, tb.ip), 2.0)
    assert len(requests) == 3, [arrival(r) for r in requests]
    gaps = [arrival(b) - arrival(a) for a, b in pairwise(requests)]
    assert all(0.2 <= g <= 0.6 for g in gaps), gaps


@requires("arp.learn_from_request", "icmp.echo")
def test_request_for_us_teaches_the_sender(dut: DUT, tb: Testbench) -> None:
    tb.answer_arp = False
    tb.resolve_dut()
    tb.send(IP() / ICMP(type=8, id=11, seq=1))
    reply = tb.expect(IP(src=dut.ip) / ICMP(type=0, id=11), what="echo reply without ARP")
    assert reply[Ether].dst == tb.mac
    tb.expect_none(_who_has(tb, tb.ip), QUIET, what="no request: the sender was learned")


@requires("udp")
def test_request_for_another_target_teaches_nothing(dut: DUT, tb: Testbench) -> None:
    # RFC 826: a new sender is only added when the request targets us
    tb.answer_arp = False
    tb.send(Ether(src=tb.other_mac, dst=BROADCAST_MAC)
            / ARP(op=1, hwsrc=tb.other_mac, psrc=tb.other_ip, pdst="10.51.0.77"))
    tb.sleep(0.05)
    s = dut.socket("udp")
    dut.sendto(s, b"to the other host", tb.other_ip, 7003)
    tb.expect(_who_has(tb, tb.other_ip), what="the DUT must still ask for the other host")


@requires("arp.gratuitous_update", "icmp.echo")
@pytest.mark.parametrize("op", [1, 2], ids=["request", "reply"])
def test_announcement_updates_existing_entry(dut: DUT, tb: Testbench, op: int) -> None:
    tb.resolve_dut()  # the DUT learns the testbench at its first MAC
    tb.arp_hosts[ip4(tb.ip)] = mac(NEW_MAC)
    # RFC 5227 2.3 announcement: sender and target address both ours, from the new MAC
    tb.send(Ether(src=NEW_MAC, dst=BROADCAST_MAC)
            / ARP(op=op, hwsrc=NEW_MAC, psrc=tb.ip, hwdst=NEW_MAC if op == 2 else ZERO_MAC,
                  pdst=tb.ip))
    tb.sleep(0.05)
    tb.send(Ether(src=NEW_MAC) / IP() / ICMP(type=8, id=12, seq=1) / Raw(b"moved"))
    reply = tb.expect(IP(src=dut.ip) / ICMP(type=0, id=12))
    assert reply[Ether].dst == NEW_MAC


@requires("udp")
def test_reply_from_the_arp_cache_uses_learned_address(dut: DUT, tb: Testbench) -> None:
    # once resolved, further datagrams go straight to the learned MAC
    s = dut.socket("udp")
    dut.sendto(s, b"one", tb.ip, 7004)
    tb.expect(IP(src=dut.ip) / UDP(dport=7004))
    answered = tb.arp_answered
    for i in range(3):
        dut.sendto(s, b"more", tb.ip, 7005 + i)
        got = tb.expect(IP(src=dut.ip) / UDP(dport=7005 + i))
        assert got[Ether].dst == tb.mac
    assert tb.arp_answered == answered, "the DUT asked again for an address it had resolved"

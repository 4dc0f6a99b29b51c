"""ipv4 over Ethernet memory links with the real arp plugin as the neighbour resolver."""

from __future__ import annotations

import errno

from ipv4_support import TEST_PROTO, Harness
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether

from layers.links.base import Medium
from layers.wire.addr import ip4

B = ip4("10.0.0.2")


def arp_harness(**settings: object) -> Harness:
    h = Harness(medium=Medium.ETHERNET, extra=["arp"],
                settings={"arp.gratuitous_count": 0, **settings})
    assert type(h.ia.resolver).__module__.startswith("layers_arp")
    return h


def test_unicast_is_resolved_then_delivered() -> None:
    h = arp_harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, b"over ethernet")
    h.net.run_until_idle()
    [got] = h.tb().got
    assert got.payload == b"over ethernet" and not got.broadcast
    frames = [Ether(f) for f in h.cap_a.frames]
    assert frames[0].haslayer(ARP) and frames[0].dst == "ff:ff:ff:ff:ff:ff"
    [ip_frame] = [f for f in frames if f.type == 0x0800]
    assert ip_frame[IP].dst == "10.0.0.2" and bytes(ip_frame[IP].payload) == b"over ethernet"


def test_fragments_queued_behind_arp_are_all_sent_and_reassembled() -> None:
    h = arp_harness()
    payload = bytes(range(200)) * 20
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, payload)
    h.net.run_until_idle()
    assert [g.payload for g in h.tb().got] == [payload]


def test_broadcast_needs_no_arp() -> None:
    h = arp_harness()
    assert h.a.ip is not None
    h.a.ip.send(ip4("10.0.0.255"), TEST_PROTO, b"all")
    h.net.run_until_idle()
    assert not any(Ether(f).haslayer(ARP) for f in h.cap_a.frames)
    assert h.tb().got[0].broadcast


def test_arp_failure_reaches_the_transport_as_ehostunreach() -> None:
    h = arp_harness()  # the default queue (101, as Linux) holds every fragment
    assert h.a.ip is not None
    h.a.ip.send(ip4("10.0.0.9"), TEST_PROTO, b"nobody home")
    h.a.ip.send(ip4("10.0.0.9"), TEST_PROTO, bytes(3000))  # three fragments, one error
    h.net.run_for(30)
    errs = h.ta().errors
    assert [e.errno for e in errs] == [errno.EHOSTUNREACH] * 2
    assert errs[0].quote == b"nobody home" and errs[0].dst == ip4("10.0.0.9")
    assert errs[1].quote == bytes(64)


def test_largest_datagram_to_an_unresolved_neighbour_arrives_whole() -> None:
    # 65000 bytes is 45 fragments, all waiting behind one ARP request: the queue must hold
    # them (Linux's unres_qlen is 101), or the datagram could never be reassembled.
    h = arp_harness()
    payload = bytes(range(256)) * 253 + bytes(232)
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, payload)
    h.net.run_until_idle()
    assert [g.payload for g in h.tb().got] == [payload]
    assert h.a.counters["arp"].drops.get("queue_overflow", 0) == 0

"""The ipv4 send path: header fields (scapy decodes what we send), routing, source choice,
local errors, fragmentation, broadcast, loopback, offloads, path MTU, neighbour failures."""

from __future__ import annotations

import errno

import pytest
from ipv4_support import (
    TEST_PROTO,
    Capture,
    ErrorsPlugin,
    GsoMemoryLink,
    Harness,
    ResolverPlugin,
    StaticResolver,
    TransportPlugin,
)
from layers_ipv4 import IPv4
from scapy.layers.inet import IP, defragment
from scapy.layers.l2 import Ether

from layers.links.base import GSO_TCPV4, Medium, TxOffload
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.addr import BROADCAST_MAC, ip4, mac_str
from layers.wire.checksum import ones_sum, pseudo_header_sum

A, B = ip4("10.0.0.1"), ip4("10.0.0.2")


def ipv4(stack: Stack) -> IPv4:
    proto = stack.protocol("ipv4")
    assert isinstance(proto, IPv4)
    return proto


def scapy_checksum_ok(raw: bytes) -> bool:
    pkt = IP(raw)
    fresh = pkt.copy()
    del fresh.chksum
    return IP(bytes(fresh)).chksum == pkt.chksum


def test_stack_ip_is_the_ipv4_plugin() -> None:
    h = Harness()
    assert h.a.ip is ipv4(h.a)
    p = ipv4(h.a)
    assert (p.name, p.ethertype, p.ip_version, p.needs_neighbour_resolver) == (
        "ipv4", 0x0800, 4, True
    )


def test_scapy_decodes_what_we_send() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, b"data for scapy", tos=0x28)
    [raw] = h.cap_a.frames
    pkt = IP(raw)
    assert (pkt.version, pkt.ihl, pkt.len, pkt.ttl, pkt.proto) == (4, 5, 34, 64, TEST_PROTO)
    assert (pkt.src, pkt.dst, pkt.tos, pkt.flags, pkt.frag) == ("10.0.0.1", "10.0.0.2", 0x28,
                                                                 0, 0)
    assert bytes(pkt.payload) == b"data for scapy"
    assert scapy_checksum_ok(raw)
    h.net.run_until_idle()
    [got] = h.tb().got
    assert (got.src, got.payload, got.tos) == (A, b"data for scapy", 0x28)
    c = h.counters(h.a)
    assert c["OutRequests"] == 1 and not c.drops


def test_ttl_default_setting_and_argument() -> None:
    h = Harness(settings={"ipv4.ttl": 5})
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, b"x")
    h.a.ip.send(B, TEST_PROTO, b"x", ttl=200)
    assert [IP(f).ttl for f in h.cap_a.frames] == [5, 200]


@pytest.mark.parametrize("ttl", [0, 256, "many"])
def test_bad_ttl_setting_is_a_configuration_error(ttl: object) -> None:
    from layers.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"ipv4\.ttl"):
        Stack(["ipv4"], settings={"ipv4.ttl": ttl})


def test_identification_counts_up_from_a_random_start() -> None:
    starts = set()
    for _ in range(4):
        h = Harness()
        assert h.a.ip is not None
        for _ in range(3):
            h.a.ip.send(B, TEST_PROTO, b"x")
        ids = [IP(f).id for f in h.cap_a.frames]
        assert ids == [(ids[0] + i) & 0xFFFF for i in range(3)]
        starts.add(ids[0])
    assert len(starts) > 1  # 4 random 16-bit starts: equal with probability ~2**-46


def test_dont_fragment_flag_is_set_on_request() -> None:
    h = Harness()
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, b"x", dont_fragment=True)
    assert IP(h.cap_a.frames[0]).flags == "DF"


# --- routing -----------------------------------------------------------------------------


@pytest.fixture
def routed() -> tuple[VirtualNetwork, Stack, TransportPlugin]:
    """a has 10.0.0.1/24 (to b) and 10.1.0.1/24 (to c) on Ethernet, plus static routes."""
    net = VirtualNetwork()
    tp = TransportPlugin()
    plugins = ["ipv4", tp, ResolverPlugin()]
    a = net.new_stack(plugins, name="a")
    b = net.new_stack(plugins, name="b")
    c = net.new_stack(plugins, name="c")
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), medium=Medium.ETHERNET)
    net.link(a, c, addresses=("10.1.0.1/24", "10.1.0.2/24"), medium=Medium.ETHERNET)
    for s in (a, b, c):
        s.start()
    a.add_route("10.9.0.0/16", gateway="10.1.0.2")
    a.add_route("10.9.5.0/24", gateway="10.0.0.2")
    return net, a, tp


@pytest.mark.parametrize(("dst", "iface_index", "next_hop"), [
    ("10.9.1.1", 1, "10.1.0.2"),  # /16 via c
    ("10.9.5.7", 0, "10.0.0.2"),  # the longer /24 wins
    ("10.1.0.77", 1, "10.1.0.77"),  # connected: the destination is the next hop
    ("10.0.0.9", 0, "10.0.0.9"),
])
def test_longest_prefix_match_picks_interface_next_hop_and_source(
    routed: tuple[VirtualNetwork, Stack, TransportPlugin], dst: str, iface_index: int,
    next_hop: str,
) -> None:
    _, a, _ = routed
    assert a.ip is not None
    assert a.ip.send(ip4(dst), TEST_PROTO, b"routed")
    resolvers = [i.resolver for i in a.interfaces]
    assert all(isinstance(r, StaticResolver) for r in resolvers)
    calls = [r.calls for r in resolvers]  # type: ignore[union-attr]
    assert len(calls[iface_index]) == 1 and not calls[1 - iface_index]
    hop, ethertype, packet, _ = calls[iface_index][0]
    assert (hop, ethertype) == (ip4(next_hop), 0x0800)
    src = a.interfaces[iface_index].address
    assert IP(packet).src == ("10.0.0.1", "10.1.0.1")[iface_index]
    assert a.ip.source_for(ip4(dst)) == src


def test_default_gateway(routed: tuple[VirtualNetwork, Stack, TransportPlugin]) -> None:
    _, a, _ = routed
    assert a.ip is not None
    a.add_route("default", gateway="10.1.0.2")
    a.ip.send(ip4("198.51.100.7"), TEST_PROTO, b"far away")
    r = a.interfaces[1].resolver
    assert isinstance(r, StaticResolver)
    assert [(hop, IP(p).dst) for hop, _, p, _ in r.calls] == [(ip4("10.1.0.2"), "198.51.100.7")]
    assert a.ip.source_for(ip4("198.51.100.7")) == ip4("10.1.0.1")


def test_no_route_is_a_local_enetunreach(
    routed: tuple[VirtualNetwork, Stack, TransportPlugin],
) -> None:
    _, a, tp = routed
    assert a.ip is not None
    assert a.ip.send(ip4("198.51.100.7"), TEST_PROTO, b"0123456789" * 10) is False
    [err] = tp.of(a).errors
    assert err.errno == errno.ENETUNREACH and err.local
    assert (err.dst, err.protocol) == (ip4("198.51.100.7"), TEST_PROTO)
    assert err.quote == (b"0123456789" * 10)[:64]
    c = a.counter("ipv4")
    assert c["OutNoRoutes"] == 1 and c.drops["no_route"] == 1
    assert a.ip.source_for(ip4("198.51.100.7")) is None
    assert a.ip.path_mtu(ip4("198.51.100.7")) == 576


@pytest.mark.parametrize("dst", ["0.0.0.0", "127.0.0.1"])
def test_zero_and_loopback_net_never_go_on_the_wire(dst: str) -> None:
    # without lo (ipv4.loopback=false) 127/8 has no route; with it, see tests/ipv4/test_loopback
    h = Harness(settings={"ipv4.loopback": False})
    h.a.add_route("default", gateway="10.0.0.2")
    assert h.a.ip is not None
    assert h.a.ip.send(ip4(dst), TEST_PROTO, b"x") is False
    assert h.cap_a.frames == []
    assert h.ta().errors[0].errno == errno.ENETUNREACH


def test_source_address_must_be_ours() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, b"x", src=ip4("10.0.0.77")) is False
    assert h.ta().errors[0].errno == errno.EADDRNOTAVAIL
    assert h.a.ip.send(B, TEST_PROTO, b"x", src=0)  # 0.0.0.0 is allowed (DHCP)
    assert IP(h.cap_a.frames[0]).src == "0.0.0.0"


def test_second_address_in_the_next_hops_subnet_is_the_source() -> None:
    h = Harness()
    h.ia.add_address(ip4("192.168.7.1"), 24)
    assert h.a.ip is not None
    assert h.a.ip.source_for(ip4("192.168.7.9")) == ip4("192.168.7.1")
    assert h.a.ip.source_for(B) == A
    h.a.ip.send(ip4("192.168.7.9"), TEST_PROTO, b"x")
    h.a.ip.send(B, TEST_PROTO, b"x")
    assert [IP(f).src for f in h.cap_a.frames] == ["192.168.7.1", "10.0.0.1"]


# --- fragmentation -----------------------------------------------------------------------


def test_fragmentation_of_4000_bytes_over_mtu_1500() -> None:
    h = Harness()
    payload = bytes(range(256)) * 15 + bytes(160)  # 4000 bytes, position-dependent
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, payload)
    frames = h.cap_a.frames
    assert [len(f) for f in frames] == [1500, 1500, 1060]
    pkts = [IP(f) for f in frames]
    assert [p.frag for p in pkts] == [0, 185, 370]  # in 8-byte units: 0, 1480, 2960
    assert [str(p.flags) for p in pkts] == ["MF", "MF", ""]
    assert len({p.id for p in pkts}) == 1
    assert all(scapy_checksum_ok(f) for f in frames)
    [whole] = defragment(pkts)
    assert bytes(whole[IP].payload) == payload
    c = h.counters(h.a)
    assert (c["FragOKs"], c["FragCreates"]) == (1, 3)
    # and our own peer reassembles them
    h.net.run_until_idle()
    [got] = h.tb().got
    assert got.payload == payload
    assert h.counters()["ReasmOKs"] == 1


def test_dont_fragment_with_an_oversize_packet_is_a_local_emsgsize() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, bytes(1481), dont_fragment=True) is False
    assert h.cap_a.frames == []
    [err] = h.ta().errors
    assert (err.errno, err.mtu) == (errno.EMSGSIZE, 1500)
    assert h.a.ip.send(B, TEST_PROTO, bytes(1480), dont_fragment=True)  # exactly fits
    assert h.counters(h.a)["FragFails"] == 1


def test_more_than_65535_bytes_is_refused() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, bytes(65516)) is False
    assert h.ta().errors[0].errno == errno.EMSGSIZE
    assert h.a.ip.send(B, TEST_PROTO, bytes(65515))
    assert len(h.cap_a.frames) == 45


def test_gso_super_segment_is_not_fragmented_when_the_link_takes_it() -> None:
    net = VirtualNetwork()
    tp = TransportPlugin()
    a = net.new_stack(["ipv4", tp], name="a")
    b = net.new_stack(["ipv4", tp], name="b")
    la, lb = GsoMemoryLink.pair(("g0", "g1"), medium=Medium.IP)
    cap = Capture(la)
    a.add_interface(cap, address="10.0.0.1/24")
    b.add_interface(lb, address="10.0.0.2/24")
    a.start()
    b.start()
    off = TxOffload(csum_start=20, csum_offset=16, gso_type=GSO_TCPV4, gso_size=1448,
                    hdr_len=40)
    assert a.ip is not None
    assert a.ip.send(B, TEST_PROTO, bytes(20000), offload=off)
    [(frame, offload)] = cap.sent
    assert len(frame) == 20020 and offload is off
    # without the offload the same payload is fragmented
    a.ip.send(B, TEST_PROTO, bytes(20000))
    assert len(cap.sent) == 1 + 14


def test_gso_without_link_support_is_fragmented_and_checksummed() -> None:
    h = Harness()
    payload = bytearray(b"\x11" * 3000)
    partial = pseudo_header_sum(A, B, TEST_PROTO, len(payload))
    payload[6:8] = (partial % 0xFFFF).to_bytes(2, "big")
    off = TxOffload(csum_start=20, csum_offset=6, gso_type=GSO_TCPV4, gso_size=1448)
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, bytes(payload), offload=off)
    assert len(h.cap_a.sent) == 3 and all(o is None for _, o in h.cap_a.sent)
    h.net.run_until_idle()
    [got] = h.tb().got
    assert ones_sum(got.payload, pseudo_header_sum(A, B, TEST_PROTO, len(payload))) == 0xFFFF


def test_partial_checksum_is_completed_when_the_link_cannot() -> None:
    h = Harness()
    payload = bytearray(b"\x00" * 8 + b"checksum me")
    partial = pseudo_header_sum(A, B, TEST_PROTO, len(payload))
    payload[6:8] = (partial % 0xFFFF).to_bytes(2, "big")
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, bytes(payload), offload=TxOffload(csum_start=20, csum_offset=6))
    [(frame, offload)] = h.cap_a.sent
    assert offload is not None and not offload.needs_csum
    assert ones_sum(frame[20:], pseudo_header_sum(A, B, TEST_PROTO, len(payload))) == 0xFFFF


# --- broadcast, multicast, loopback ------------------------------------------------------


@pytest.mark.parametrize("dst", ["255.255.255.255", "10.0.0.255"])
def test_broadcast_goes_to_the_link_broadcast_without_resolution(dst: str) -> None:
    h = Harness(medium=Medium.ETHERNET)
    assert h.a.ip is not None
    assert h.a.ip.send(ip4(dst), TEST_PROTO, b"to everyone")
    [frame] = h.cap_a.frames
    eth = Ether(frame)
    assert eth.dst == "ff:ff:ff:ff:ff:ff" and eth.type == 0x0800
    assert eth[IP].dst == dst and eth[IP].src == "10.0.0.1"
    resolver = h.ia.resolver
    assert isinstance(resolver, StaticResolver) and resolver.calls == []
    h.net.run_until_idle()
    [got] = h.tb().got
    assert got.broadcast and got.payload == b"to everyone"
    assert h.counters(h.a)["OutBcastPkts"] == 1


def test_unicast_on_ethernet_goes_through_the_resolver() -> None:
    h = Harness(medium=Medium.ETHERNET)
    assert h.a.ip is not None
    h.a.ip.send(B, TEST_PROTO, b"unicast")
    resolver = h.ia.resolver
    assert isinstance(resolver, StaticResolver)
    assert [(hop, et) for hop, et, _, _ in resolver.calls] == [(B, 0x0800)]
    assert h.ib.mac is not None and Ether(h.cap_a.frames[0]).dst == mac_str(h.ib.mac)
    h.net.run_until_idle()
    assert [g.payload for g in h.tb().got] == [b"unicast"]


def test_limited_broadcast_fragments_all_go_to_the_link_broadcast() -> None:
    h = Harness(medium=Medium.ETHERNET)
    assert h.a.ip is not None
    h.a.ip.send(0xFFFFFFFF, TEST_PROTO, bytes(3000))
    assert [f[:6] for f in h.cap_a.frames] == [BROADCAST_MAC] * 3
    h.net.run_until_idle()
    assert len(h.tb().got[0].payload) == 3000 and h.tb().got[0].broadcast


def test_multicast_goes_to_the_group_mac() -> None:
    h = Harness(medium=Medium.ETHERNET)
    h.a.add_route("224.0.0.0/4", interface=h.ia.name)
    assert h.a.ip is not None
    h.a.ip.send(ip4("239.1.2.3"), TEST_PROTO, b"group")
    assert Ether(h.cap_a.frames[0]).dst == "01:00:5e:01:02:03"


def test_loopback_to_our_own_address_is_deferred() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(A, TEST_PROTO, b"to myself" * 1000)  # larger than the MTU: not cut
    assert h.ta().got == []  # never synchronously re-entering receive
    h.net.run_until_idle()
    [got] = h.ta().got
    assert (got.src, got.dst, got.payload) == (A, A, b"to myself" * 1000)
    assert got.interface is h.ia and not got.broadcast
    assert h.cap_a.frames == [] and h.tb().got == []
    assert h.counters(h.a)["OutLoopback"] == 1
    assert h.a.ip.source_for(A) == A and h.a.ip.path_mtu(A) == 65535


# --- path MTU ----------------------------------------------------------------------------


def test_path_mtu_is_the_interface_mtu_then_what_icmp_taught() -> None:
    h = Harness(mtu=1400)
    ip = ipv4(h.a)
    assert ip.path_mtu(B) == 1400
    assert ip.update_path_mtu(B, 1000)
    assert ip.path_mtu(B) == 1000
    assert not ip.update_path_mtu(B, 1200)  # never raised by ICMP
    assert not ip.update_path_mtu(B, 0)  # old routers give no MTU
    assert ip.update_path_mtu(B, 100)  # forged tiny value is clamped
    assert ip.path_mtu(B) == 552
    ip.send(B, TEST_PROTO, bytes(1000))
    assert [len(f) for f in h.cap_a.frames] == [548, 492]
    h.net.run_for(601)
    assert ip.path_mtu(B) == 1400  # expired (RFC 1191: try larger again)


def test_pmtu_update_turns_df_sends_into_emsgsize_with_the_new_mtu() -> None:
    h = Harness()
    ip = ipv4(h.a)
    ip.update_path_mtu(B, 1280)
    assert not ip.send(B, TEST_PROTO, bytes(1300), dont_fragment=True)
    assert h.ta().errors[0].mtu == 1280


# --- neighbour failures --------------------------------------------------------------------


def test_unreachable_reports_to_the_transport_with_a_quote() -> None:
    h = Harness(medium=Medium.ETHERNET)
    ip = ipv4(h.a)
    ip.send(B, TEST_PROTO, b"transport header and data")
    [(_, _, packet, _)] = h.ia.resolver.calls  # type: ignore[union-attr]
    h.a.neighbour_unreachable(h.ia, 0x0800, packet)  # the stack's upcall, as ARP makes it
    [err] = h.ta().errors
    assert (err.errno, err.src, err.dst, err.protocol) == (errno.EHOSTUNREACH, A, B, TEST_PROTO)
    assert err.quote == b"transport header and data" and err.local


def test_unreachable_for_later_fragments_is_not_reported_twice() -> None:
    h = Harness(medium=Medium.ETHERNET)
    ip = ipv4(h.a)
    ip.send(B, TEST_PROTO, bytes(4000))
    calls = h.ia.resolver.calls  # type: ignore[union-attr]
    for _, _, packet, _ in calls:
        ip.unreachable(h.ia, packet, errno.EHOSTUNREACH)
    ip.unreachable(h.ia, b"\x45\x00", errno.EHOSTUNREACH)
    assert len(calls) == 3 and len(h.ta().errors) == 1
    assert h.counters(h.a).drops["unreachable_malformed"] == 1


def test_error_reporter_double_is_wired() -> None:
    h = Harness()
    assert isinstance(h.ep, ErrorsPlugin) and h.b.errors is h.ep.of(h.b)

"""ipv4's per-destination egress cache (route, source, neighbour MAC, Ethernet header): the
packet after any change that could alter how it leaves uses the new facts.

Each test first checks that the destination is cached (so the change meets a cached entry),
then makes one change and looks at the next frame on the wire."""

from __future__ import annotations

from collections.abc import Callable

from ipv4_support import TEST_PROTO, Harness
from layers_ipv4 import protocol as ipv4_protocol
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from layers.links.base import Medium
from layers.wire.addr import ip4, mac

B = ip4("10.0.0.2")
C = ip4("10.0.0.3")
FAR = ip4("192.168.7.5")
MAC_B2 = "02:00:00:00:0b:02"
MAC_C = "02:00:00:00:0c:0c"


def arp_harness(**settings: object) -> Harness:
    h = Harness(medium=Medium.ETHERNET, extra=["arp"],
                settings={"arp.gratuitous_count": 0, **settings})
    return h


def ip_frames(h: Harness) -> list[Ether]:
    return [f for f in map(Ether, h.cap_a.frames) if f.type == 0x0800]


def send(h: Harness, dst: int, payload: bytes = b"x", **kw: object) -> bool:
    assert h.a.ip is not None
    ok = bool(h.a.ip.send(dst, TEST_PROTO, payload, **kw))  # type: ignore[arg-type]
    h.net.run_for(0.1)  # not until idle: that would let the neighbour entries expire
    return ok


def cached(h: Harness, dst: int) -> bool:
    return dst in h.a.protocol("ipv4")._egress


def warmed(dst: int = B, **settings: float) -> Harness:
    """B resolved and ``dst`` cached after two packets."""
    h = arp_harness(**settings)
    send(h, dst)
    send(h, dst)
    assert cached(h, dst)
    return h


def test_cached_sends_are_the_same_frames_as_uncached_ones() -> None:
    h = warmed()
    before = len(h.tb().got)
    assert send(h, B, b"cached", tos=0x10, ttl=9)
    [got] = h.tb().got[before:]
    assert got.payload == b"cached" and got.tos == 0x10 and got.ttl == 9
    last = ip_frames(h)[-1]
    assert last.src == mac_of(h, h.ia) and last.dst == mac_of(h, h.ib)
    raw = bytes(last[IP])
    rebuilt = IP(raw)
    del rebuilt.chksum  # scapy computes it afresh
    assert IP(bytes(rebuilt)).chksum == IP(raw).chksum
    assert h.counters().get("InHdrErrors", 0) == 0


def mac_of(h: Harness, iface: object) -> str:
    m = iface.mac  # type: ignore[attr-defined]
    return ":".join(f"{b:02x}" for b in m)


def test_neighbour_mac_change_is_used_by_the_next_packet() -> None:
    h = warmed()
    resolver = h.ia.resolver
    resolver.learn(B, mac(MAC_B2), confirmed=True, create=False)  # type: ignore[union-attr]
    send(h, B)
    assert ip_frames(h)[-1].dst == MAC_B2


def test_static_neighbour_entry_is_used_by_the_next_packet() -> None:
    h = warmed()
    h.ia.resolver.add_static(B, MAC_B2)  # type: ignore[union-attr]
    send(h, B)
    assert ip_frames(h)[-1].dst == MAC_B2


def test_neighbour_going_stale_gets_its_bookkeeping_on_the_next_packet() -> None:
    h = warmed(B, **{"arp.reachable_time": 5.0})
    h.net.run_for(6)  # reachable -> stale
    resolver = h.ia.resolver
    assert resolver.lookup(B).state == 3  # type: ignore[union-attr]  # stale
    send(h, B)
    # a stale entry used moves to delay (and is probed later): ARP must have seen the packet
    assert resolver.lookup(B).state != 3  # type: ignore[union-attr]


def test_removed_neighbour_entry_is_resolved_afresh() -> None:
    h = warmed()
    h.ia.resolver.delete(B)  # type: ignore[union-attr]
    arp_before = h.a.counter("arp")["tx_requests"]
    send(h, B)
    assert h.a.counter("arp")["tx_requests"] == arp_before + 1


def gateway_harness() -> Harness:
    h = arp_harness()
    resolver = h.ia.resolver
    resolver.add_static(C, MAC_C)  # type: ignore[union-attr]
    resolver.add_static(B, MAC_B2)  # type: ignore[union-attr]
    h.a.add_route("192.168.7.0/24", gateway="10.0.0.2")
    send(h, FAR)
    send(h, FAR)
    assert cached(h, FAR) and ip_frames(h)[-1].dst == MAC_B2
    return h


def test_replaced_route_is_used_by_the_next_packet() -> None:
    h = gateway_harness()
    [route] = [r for r in h.a.routes if r.network == ip4("192.168.7.0")]
    h.a.routes.remove(route)
    h.a.add_route("192.168.7.0/24", gateway="10.0.0.3")
    send(h, FAR)
    assert ip_frames(h)[-1].dst == MAC_C


def test_more_specific_route_is_used_by_the_next_packet() -> None:
    h = gateway_harness()
    h.a.add_route("192.168.7.5/32", gateway="10.0.0.3")
    send(h, FAR)
    assert ip_frames(h)[-1].dst == MAC_C


def test_removed_route_stops_the_next_packet() -> None:
    h = gateway_harness()
    [route] = [r for r in h.a.routes if r.network == ip4("192.168.7.0")]
    h.a.routes.remove(route)
    frames = len(h.cap_a.frames)
    assert not send(h, FAR)
    assert len(h.cap_a.frames) == frames
    assert h.a.counter("ipv4")["OutNoRoutes"] == 1


def test_destination_becoming_our_address_is_looped_back() -> None:
    h = warmed()
    h.ia.add_address(B, 24)  # now ours: the next packet must not go out on the link
    frames = len(h.cap_a.frames)
    send(h, B)
    assert len(h.cap_a.frames) == frames
    assert h.a.counter("ipv4")["OutLoopback"] == 1


def test_interface_down_stops_the_next_packet() -> None:
    h = warmed()
    h.a.set_interface_up(h.ia.name, False)
    frames = len(h.cap_a.frames)
    assert not send(h, B)
    assert len(h.cap_a.frames) == frames


def test_interface_mtu_change_is_used_by_the_next_packet() -> None:
    h = warmed()
    h.ia.mtu = 576
    frames = len(h.cap_a.frames)
    send(h, B, bytes(1000))
    new = h.cap_a.frames[frames:]
    assert len(new) == 2 and all(len(f) <= 576 + 14 for f in new)
    assert not send(h, B, bytes(1000), dont_fragment=True)


def test_path_mtu_is_used_by_the_next_packet() -> None:
    h = warmed()
    assert h.a.protocol("ipv4").update_path_mtu(B, 600)
    frames = len(h.cap_a.frames)
    send(h, B, bytes(1000))
    new = h.cap_a.frames[frames:]
    assert len(new) == 2 and all(len(f) <= 600 + 14 for f in new)


def test_other_source_address_takes_the_full_path() -> None:
    h = warmed()
    h.ia.add_address(ip4("10.0.0.7"), 24)
    send(h, B)
    send(h, B, src=ip4("10.0.0.7"))
    assert ip_frames(h)[-1][IP].src == "10.0.0.7"
    send(h, B)
    assert ip_frames(h)[-1][IP].src == "10.0.0.1"


def test_cache_is_bounded(monkeypatch: object) -> None:
    monkeypatch.setattr(ipv4_protocol, "EGRESS_CACHE_SIZE", 4)  # type: ignore[attr-defined]
    h = arp_harness()
    resolver = h.ia.resolver
    h.a.add_route("192.168.7.0/24", gateway="10.0.0.2")
    resolver.add_static(B, MAC_B2)  # type: ignore[union-attr]
    for i in range(10):
        send(h, ip4("192.168.7.0") + i + 1)
        assert len(h.a.protocol("ipv4")._egress) <= 4
    assert len(h.a.protocol("ipv4")._egress) >= 1


def test_ip_link_cached_then_route_removed_stops_the_next_packet() -> None:
    h = Harness(medium=Medium.IP)
    h.a.add_route("192.168.7.0/24", gateway="10.0.0.2")
    send(h, FAR)
    send(h, FAR, b"cached")
    assert cached(h, FAR)
    assert h.cap_a.frames[-1][20:] == b"cached" and IP(h.cap_a.frames[-1]).dst == "192.168.7.5"
    [route] = [r for r in h.a.routes if r.network == ip4("192.168.7.0")]
    h.a.routes.remove(route)
    frames = len(h.cap_a.frames)
    assert not send(h, FAR)
    assert len(h.cap_a.frames) == frames


def test_send_pieces_through_the_cache_is_send_with_dont_fragment() -> None:
    """``send_pieces`` (a transport's packet in pieces, its length and source given) makes the
    frame ``send(..., dont_fragment=True)`` makes, from the cache and without it; a packet
    over the MTU or from another source goes to ``send``, which refuses or reroutes it."""
    h = warmed()
    ip = h.a.protocol("ipv4")
    src = ip4("10.0.0.1")

    def frame_of(call: Callable[[], bool]) -> bytes:
        before = len(h.cap_a.frames)
        assert call()
        h.net.run_for(0.1)
        [f] = h.cap_a.frames[before:]
        return bytes(f)

    parts = (b"head", memoryview(b"-and-body"))
    ident = ip._ident
    via_pieces = frame_of(lambda: ip.send_pieces(B, TEST_PROTO, parts, 13, src, 0x10, None))
    ip._ident = ident
    via_send = frame_of(
        lambda: ip.send(B, TEST_PROTO, parts, src=src, tos=0x10, dont_fragment=True))
    assert via_pieces == via_send
    got = IP(via_pieces[14:])
    assert got.flags == "DF" and got.tos == 0x10 and bytes(got.payload) == b"head-and-body"
    requests = h.counters(h.a)["OutRequests"]
    ip._egress.clear()  # a miss: send() decides, and caches again
    assert frame_of(lambda: ip.send_pieces(B, TEST_PROTO, parts, 13, src, 0, None))[34:] == (
        b"head-and-body")
    assert cached(h, B) and h.counters(h.a)["OutRequests"] == requests + 1
    frames = len(h.cap_a.frames)
    assert not ip.send_pieces(B, TEST_PROTO, (bytes(1481),), 1481, src, 0, None)  # DF, > MTU
    h.ia.add_address(ip4("10.0.0.7"), 24)
    other = frame_of(lambda: ip.send_pieces(B, TEST_PROTO, parts, 13, ip4("10.0.0.7"), 0, None))
    assert IP(other[14:]).src == "10.0.0.7" and len(h.cap_a.frames) == frames + 1

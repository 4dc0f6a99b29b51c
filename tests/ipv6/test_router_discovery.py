"""Router discovery and SLAAC on the virtual clock (RFC 4861 6.3, RFC 4862 5.5): router
solicitations when an interface comes up, crafted router advertisements (default router with
its lifetime, MTU option, source link-layer option, prefix information with valid and
preferred lifetimes), the RAs dropped by reason, and the accept_ra/autoconf settings."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from layers.frame import Frame
from layers.hookspecs import hookimpl
from layers.interface import Interface
from layers.protocols import EchoReply
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.ethernet import ETH_P_IPV6
from layers.wire.ipv6 import (
    ALL_NODES,
    ND_OPT_MTU,
    ND_OPT_PREFIX_INFO,
    ND_OPT_SOURCE_LLADDR,
    ND_ROUTER_ADVERT,
    build_icmpv6,
    build_ipv6_header,
    eui64_interface_id,
    ip6,
    ip6_str,
    is_link_local6,
    multicast_mac6,
    stable_interface_id,
)

P6 = ["ipv6", "icmpv6", "ndp"]
PREFIX = ip6("2001:db8:1::")
ROUTER_GLOBAL = "2001:db8:1::1"
A_FLAG, L_FLAG = 0x40, 0x80


class Tap:
    """Every IPv6 frame a stack receives."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    @hookimpl(wrapper=True)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        data = bytes(frame.data)
        if data[12:14] == b"\x86\xdd":
            self.frames.append(data)
        yield

    def icmpv6(self, icmp_type: int) -> list[bytes]:
        return [f for f in self.frames if f[14 + 6] == 58 and f[54] == icmp_type]


def setup(host_settings: dict[str, Any] | None = None
          ) -> tuple[VirtualNetwork, Stack, Stack, Interface, Interface]:
    net = VirtualNetwork()
    h = net.new_stack(P6, name="h", settings=host_settings or {})
    r = net.new_stack(P6, name="r", settings={"ndp.router_solicitations": 0})
    ih, ir = net.link(h, r, latency=0.001)
    r.add_address(ir, f"{ROUTER_GLOBAL}/64")
    h.start()
    r.start()
    net.run_for(2.0)  # link-local addresses through DAD
    return net, h, r, ih, ir


def link_local(stack: Stack, iface: Interface) -> int:
    return next(a for a, _ in iface.addresses6 if is_link_local6(a))


def ra_message(r: Stack, ir: Interface, *, src: int | None = None, lifetime: int = 1800,
               prefixes: tuple[tuple[int, int, int, int, int], ...] = (
                   (PREFIX, 64, A_FLAG | L_FLAG, 7200, 3600),),
               mtu: int | None = None, sll: bool = True, raw_options: bytes = b"",
               cur_hop: int = 0, reachable_ms: int = 0, retrans_ms: int = 0) -> bytes:
    src = link_local(r, ir) if src is None else src
    body = (bytes((cur_hop, 0)) + lifetime.to_bytes(2, "big") + reachable_ms.to_bytes(4, "big")
            + retrans_ms.to_bytes(4, "big"))
    if sll:
        assert ir.mac is not None
        body += bytes((ND_OPT_SOURCE_LLADDR, 1)) + ir.mac
    if mtu is not None:
        body += bytes((ND_OPT_MTU, 1, 0, 0)) + mtu.to_bytes(4, "big")
    for prefix, plen, flags, valid, preferred in prefixes:
        body += (bytes((ND_OPT_PREFIX_INFO, 4, plen, flags)) + valid.to_bytes(4, "big")
                 + preferred.to_bytes(4, "big") + bytes(4) + prefix.to_bytes(16, "big"))
    return build_icmpv6(src, ALL_NODES, ND_ROUTER_ADVERT, 0, body + raw_options)


def send_ra(net: VirtualNetwork, r: Stack, ir: Interface, msg: bytes | None = None, *,
            src: int | None = None, hop: int = 255, **kwargs: Any) -> None:
    src = link_local(r, ir) if src is None else src
    msg = ra_message(r, ir, src=src, **kwargs) if msg is None else msg
    # straight onto the link: any source, any hop limit
    ir.send_ethernet(multicast_mac6(ALL_NODES), ETH_P_IPV6,
                     build_ipv6_header(src, ALL_NODES, 58, len(msg), hop) + msg)
    net.run_for(0.1)


def addresses(h: Stack) -> dict[str, dict[str, Any]]:
    return {row["address"]: row for row in h.report()["addresses6"]}


def default_routes(h: Stack) -> list[dict[str, Any]]:
    return [row for row in h.report()["routes6"] if row["prefix_length"] == 0]


def test_router_solicitations_when_the_interface_comes_up() -> None:
    net = VirtualNetwork()
    tap = Tap()
    h = net.new_stack(P6, name="h")
    r = net.new_stack([*P6, tap], name="r", settings={"ndp.router_solicitations": 0})
    ih, _ = net.link(h, r, latency=0.001)
    h.start()
    r.start()
    net.run_for(1.05)  # the first waits up to MAX_RTR_SOLICITATION_DELAY (1 s)
    assert h.counter("ndp")["tx_router_solicitations"] == 1
    net.run_for(2.9)  # t = 3.95: the second comes 4 s after the first (RTR_SOLICITATION_INT.)
    assert h.counter("ndp")["tx_router_solicitations"] == 1
    net.run_for(1.1)
    assert h.counter("ndp")["tx_router_solicitations"] == 2
    net.run_for(30.0)
    assert h.counter("ndp")["tx_router_solicitations"] == 3  # MAX_RTR_SOLICITATIONS
    assert r.counter("ndp")["tx_router_solicitations"] == 0  # ndp.router_solicitations=0
    rs = tap.icmpv6(133)
    assert len(rs) == 3
    for frame in rs:  # to all-routers' MAC and group, hop limit 255
        assert frame[:6] == bytes.fromhex("333300000002")
        assert frame[14 + 24:14 + 40] == ip6("ff02::2").to_bytes(16, "big")
        assert frame[14 + 7] == 255
    # the last ones leave from our link-local address with our link-layer address
    last = rs[-1]
    assert int.from_bytes(last[22:38], "big") == link_local(h, ih)
    assert last[54 + 8:54 + 16] == bytes((1, 1)) + (ih.mac or b"")
    # r is a host: it has not joined all-routers and drops them
    assert r.counter("ipv6").drops["multicast_not_joined"] >= 3


def test_slaac_address_default_router_and_mtu_from_an_advertisement() -> None:
    net, h, r, ih, ir = setup()
    assert ih.mac is not None
    send_ra(net, r, ir, mtu=1400)
    slaac = ip6_str(PREFIX | eui64_interface_id(ih.mac))  # as the link-local one (EUI-64)
    rows = addresses(h)
    assert rows[slaac]["origin"] == "autoconf" and rows[slaac]["state"] == "tentative"
    net.run_for(1.5)  # duplicate address detection
    assert addresses(h)[slaac]["state"] == "preferred"
    router = ip6_str(link_local(r, ir))
    assert default_routes(h) == [{"family": 6, "destination": "::", "prefix_length": 0,
                                  "gateway": router, "interface": ih.name, "metric": 1024,
                                  "origin": "ra"}]
    assert any(row["destination"] == "2001:db8:1::" and row["prefix_length"] == 64
               for row in h.report()["routes6"])  # on-link (L): the address's prefix route
    assert h.report()["routers6"] == [{"interface": ih.name, "router": router,
                                       "expires": 1798.4}]
    # the router's source link-layer option: a neighbour entry flagged router
    ndp_rows = {row["address"]: row for row in h.report()["ndp"]}
    assert ndp_rows[router]["router"] and ndp_rows[router]["mac"]
    assert h.ip6 is not None and h.ip6.path_mtu(ip6("2001:db8:99::1")) == 1400
    assert h.counter("ndp")["ra_mtu_updates"] == 1
    sent = h.counter("ndp")["tx_router_solicitations"]
    net.run_for(20.0)
    assert h.counter("ndp")["tx_router_solicitations"] == sent  # an RA ends soliciting
    # the address works: the router pings it, and we reach off-link through the router
    got: list[EchoReply | OSError] = []
    r.protocol("icmpv6").echo(ip6(slaac), ident=1, seq=1, payload=b"x" * 32,
                              callback=got.append)
    h.protocol("icmpv6").echo(ip6(ROUTER_GLOBAL), ident=1, seq=2, payload=b"y",
                              callback=got.append)
    net.run_for(1.0)
    assert [type(g) for g in got] == [EchoReply, EchoReply], got
    assert h.ip6.source_for(ip6("2001:db8:99::1")) == ip6(slaac)


def test_lifetimes_deprecate_then_remove_and_the_router_expires() -> None:
    net, h, r, ih, ir = setup()
    assert ih.mac is not None
    send_ra(net, r, ir, lifetime=600, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 300, 100),))
    slaac = ip6_str(PREFIX | eui64_interface_id(ih.mac))
    net.run_for(99.0)
    assert addresses(h)[slaac]["state"] == "preferred"
    net.run_for(2.0)
    assert addresses(h)[slaac]["state"] == "deprecated"  # still ours, no longer chosen
    assert h.ip6 is not None and h.ip6.address_state(ip6(slaac)) == "deprecated"
    assert h.counter("ndp")["slaac_deprecated"] == 1
    net.run_for(200.0)
    assert slaac not in addresses(h)
    assert not any(row["destination"] == "2001:db8:1::" for row in h.report()["routes6"])
    assert h.counter("ndp")["slaac_expired"] == 1
    assert default_routes(h)  # the router lives 600 s
    net.run_for(300.0)
    assert default_routes(h) == [] and h.report()["routers6"] == []
    assert h.counter("ndp")["default_routers_expired"] == 1


def test_a_later_advertisement_refreshes_by_the_two_hour_rule() -> None:
    net, h, r, ih, ir = setup()
    assert ih.mac is not None
    slaac = ip6_str(PREFIX | eui64_interface_id(ih.mac))
    send_ra(net, r, ir, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 20000, 20000),))
    # a forged short valid lifetime cannot kill the address: it becomes two hours (5.5.3 e)
    send_ra(net, r, ir, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 10, 10),))
    net.run_for(7000.0)
    assert addresses(h)[slaac]["state"] == "deprecated"  # preferred lifetime 10 s applied
    net.run_for(300.0)
    assert slaac not in addresses(h)  # 7200 s after the second advertisement
    # preferred lifetime 0 deprecates at once; a new RA with one makes it preferred again
    send_ra(net, r, ir, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 600, 0),))
    net.run_for(2.0)
    assert addresses(h)[slaac]["state"] == "deprecated"
    send_ra(net, r, ir, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 600, 300),))
    assert addresses(h)[slaac]["state"] == "preferred"
    # router lifetime 0: no longer a default router
    assert default_routes(h)
    send_ra(net, r, ir, lifetime=0, prefixes=())
    assert default_routes(h) == [] and h.counter("ndp")["default_routers_removed"] == 1


def test_invalid_advertisements_are_dropped_by_reason() -> None:
    net, h, r, _ih, ir = setup()
    ll = link_local(r, ir)
    send_ra(net, r, ir, hop=64)
    send_ra(net, r, ir, src=ip6(ROUTER_GLOBAL))  # not link-local
    bad = bytearray(ra_message(r, ir))
    bad[2] ^= 0xFF
    send_ra(net, r, ir, bytes(bad))
    send_ra(net, r, ir, build_icmpv6(ll, ALL_NODES, ND_ROUTER_ADVERT, 0, bytes(8)))
    send_ra(net, r, ir, ra_message(r, ir, raw_options=bytes((ND_OPT_MTU, 0, 0, 0))))
    send_ra(net, r, ir, build_icmpv6(ll, ALL_NODES, ND_ROUTER_ADVERT, 1, bytes(12)))
    drops = h.counter("ndp").drops
    assert drops["ra_bad_hop_limit"] == 1
    assert drops["ra_source_not_link_local"] == 1
    assert drops["ra_truncated"] == 1
    assert drops["ra_bad_option"] == 1
    assert drops["ra_bad_code"] == 1
    assert h.counter("icmpv6").drops["bad_checksum"] == 1
    assert h.counter("ndp")["ra_accepted"] == 0
    assert default_routes(h) == []
    assert not any(row["origin"] == "autoconf" for row in h.report()["addresses6"])
    # prefixes that are not for SLAAC: counted, no address
    send_ra(net, r, ir, prefixes=((ip6("fe80::"), 64, A_FLAG | L_FLAG, 600, 300),
                                  (PREFIX, 48, A_FLAG, 600, 300),
                                  (ip6("2001:db8:2::"), 64, A_FLAG, 100, 300)))
    c = h.counter("ndp")
    assert (c["prefix_ignored_link_local"], c["prefix_bad_length"],
            c["prefix_bad_lifetimes"]) == (1, 1, 1)
    assert not any(row["origin"] == "autoconf" for row in h.report()["addresses6"])


def test_accept_ra_off_sends_no_solicitation_and_drops_advertisements() -> None:
    net, h, r, _ih, ir = setup({"ndp.accept_ra": False})
    net.run_for(20.0)
    assert h.counter("ndp")["tx_router_solicitations"] == 0
    send_ra(net, r, ir)
    assert h.counter("ndp").drops["ra_disabled"] == 1
    assert default_routes(h) == []
    assert not any(row["origin"] == "autoconf" for row in h.report()["addresses6"])


def test_autoconf_off_keeps_the_router_and_an_on_link_prefix_route() -> None:
    net, h, r, _ih, ir = setup({"ndp.autoconf": False})
    send_ra(net, r, ir, prefixes=((PREFIX, 64, A_FLAG | L_FLAG, 50, 30),))
    assert default_routes(h)
    assert not any(row["origin"] == "autoconf" for row in h.report()["addresses6"])
    onlink = [row for row in h.report()["routes6"] if row["destination"] == "2001:db8:1::"]
    assert onlink and onlink[0]["origin"] == "ra"
    net.run_for(60.0)
    assert not any(row["destination"] == "2001:db8:1::" for row in h.report()["routes6"])
    assert h.counter("ndp")["onlink_expired"] == 1


def test_stable_privacy_identifiers_for_slaac() -> None:
    net, h, r, ih, ir = setup({"ipv6.addr_gen_mode": "stable-privacy",
                               "ipv6.stable_secret": "s3cret"})
    send_ra(net, r, ir)
    iid = stable_interface_id(PREFIX, ih.name, b"s3cret")
    assert ip6_str(PREFIX | iid) in addresses(h)
    assert h.ip6 is not None
    assert not any(a == PREFIX | eui64_interface_id(ih.mac or b"")
                   for a, _ in ih.addresses6)


def test_a_flood_of_prefixes_and_routers_is_bounded() -> None:
    net, h, r, ih, ir = setup()
    prefixes = tuple((ip6(f"2001:db8:{n:x}::"), 64, A_FLAG | L_FLAG, 600, 300)
                     for n in range(100, 120))
    send_ra(net, r, ir, prefixes=prefixes[:10])
    send_ra(net, r, ir, prefixes=prefixes[10:])
    autoconf = [row for row in h.report()["addresses6"] if row["origin"] == "autoconf"]
    assert len(autoconf) == 16 and h.counter("ndp")["prefix_too_many"] == 4
    for n in range(20):  # advertisements from 20 link-local sources
        send_ra(net, r, ir, src=ip6(f"fe80::{n + 1:x}"), prefixes=())
    assert len(default_routes(h)) == 16
    assert h.counter("ndp")["ra_too_many_routers"] == 5  # r's own router was the first
    assert ih.name in {row["interface"] for row in h.report()["routers6"]}


def test_hop_limit_reachable_time_and_retrans_timer_from_the_router() -> None:
    net, h, r, ih, ir = setup()
    res = h.protocol("ndp").resolvers[ih]
    assert (res.reachable_time, res.retrans_timer) == (30.0, 1.0)  # the settings
    send_ra(net, r, ir, cur_hop=200, reachable_ms=10_000, retrans_ms=2_500)
    assert 5.0 <= res.reachable_time <= 15.0 and res.retrans_timer == 2.5
    net.run_for(1.5)
    got: list[EchoReply | OSError] = []
    r.protocol("icmpv6").echo(link_local(h, ih), ident=1, seq=1, payload=b"x",
                              callback=got.append)
    net.run_for(0.5)
    assert isinstance(got[0], EchoReply) and got[0].ttl == 200  # our reply's hop limit
    # zero fields leave them as they are
    send_ra(net, r, ir)
    assert res.retrans_timer == 2.5 and h.protocol("ipv6").hop_limit == 200

"""MLDv2 (RFC 3810) on the virtual clock: the reports an interface sends for the groups it
joins and leaves, and its answers to general, group-specific and MLDv1 queries."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from layers_ndp.mld import HOP_BY_HOP, MLDV2_ROUTERS, max_response_delay

from layers.frame import Frame
from layers.hookspecs import hookimpl
from layers.interface import Interface
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.checksum import checksum
from layers.wire.ipv6 import (
    ALL_NODES,
    NH_HOPOPTS,
    NH_ICMPV6,
    build_icmpv6,
    ip6,
    is_link_local6,
    pseudo_header_sum6,
    solicited_node,
)

P6 = ["ipv6", "icmpv6", "ndp"]
EXCLUDE, TO_INCLUDE, TO_EXCLUDE = 2, 3, 4


class Tap:
    """The MLD messages a stack receives: (IPv6 source, destination, hop limit, ICMPv6)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, int, int, bytes, bytes]] = []

    @hookimpl(wrapper=True)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        data = bytes(frame.data)
        if data[12:14] == b"\x86\xdd" and data[20] == NH_HOPOPTS and data[54] == NH_ICMPV6:
            icmp = data[62:]
            if icmp[0] in (131, 143):
                self.messages.append((int.from_bytes(data[22:38], "big"),
                                      int.from_bytes(data[38:54], "big"), data[21],
                                      data[54:62], icmp))
        yield

    def v2_records(self) -> list[tuple[int, int]]:
        out = []
        for *_, icmp in self.messages:
            if icmp[0] == 143:
                n = int.from_bytes(icmp[6:8], "big")
                for i in range(n):
                    at = 8 + 20 * i
                    out.append((icmp[at], int.from_bytes(icmp[at + 4:at + 20], "big")))
        return out


def setup(settings: dict[str, Any] | None = None
          ) -> tuple[VirtualNetwork, Stack, Stack, Interface, Interface, Tap]:
    net = VirtualNetwork()
    tap = Tap()
    h = net.new_stack(P6, name="h", settings={"ndp.router_solicitations": 0, **(settings or {})})
    r = net.new_stack([*P6, tap], name="r", settings={"ndp.router_solicitations": 0,
                                                      "ndp.mld": False})
    ih, ir = net.link(h, r, latency=0.001)
    h.add_address(ih, "2001:db8::7/64")
    h.start()
    r.start()
    return net, h, r, ih, ir, tap


def ll(iface: Interface) -> int:
    return next(a for a, _ in iface.addresses6 if is_link_local6(a))


def query(net: VirtualNetwork, r: Stack, ir: Interface, *, group: int = 0, v2: bool = True,
          code: int = 1000, src: int | None = None, dst: int = ALL_NODES) -> None:
    src = ll(ir) if src is None else src
    body = code.to_bytes(2, "big") + bytes(2) + group.to_bytes(16, "big")
    if v2:
        body += bytes((2, 125, 0, 0))  # QRV 2, QQIC 125 s, no sources
    msg = build_icmpv6(src, dst, 130, 0, body)
    send: Any = r.protocol("ipv6").send
    send(dst, NH_HOPOPTS, HOP_BY_HOP + msg, src=src, ttl=1, interface=ir)


def test_reports_on_join_repeated_once_with_router_alert_and_hop_limit_one() -> None:
    net, h, _r, ih, _ir, tap = setup()
    net.run_for(3.0)
    groups = {solicited_node(ip6("2001:db8::7")), solicited_node(ll(ih))}
    records = tap.v2_records()
    assert {g for k, g in records if k == TO_EXCLUDE} == groups
    assert ALL_NODES not in {g for _, g in records}  # never reported (RFC 3810 6)
    for g in groups:  # robustness 2: every join reported twice
        assert sum(1 for k, x in records if x == g and k == TO_EXCLUDE) == 2
    for src, dst, hop, hbh, icmp in tap.messages:
        assert dst == MLDV2_ROUTERS and hop == 1
        assert hbh == bytes((58, 0, 5, 2, 0, 0, 1, 0))  # router alert, MLD
        assert src == 0 or is_link_local6(src)
        assert checksum(icmp, pseudo_header_sum6(src, dst, 58, len(icmp))) == 0
    assert h.counter("ndp")["tx_mld_reports"] == len(tap.messages)
    # a new address: its solicited-node group is reported; removing it: left
    new = ip6("2001:db8::99")
    h.add_address(ih, "2001:db8::99/64")
    net.run_for(2.0)
    assert (TO_EXCLUDE, solicited_node(new)) in tap.v2_records()
    ih.remove_address6(new)
    net.run_for(2.0)
    assert (TO_INCLUDE, solicited_node(new)) in tap.v2_records()


def test_general_and_group_specific_queries_are_answered() -> None:
    net, h, r, ih, ir, tap = setup()
    net.run_for(3.0)
    tap.messages.clear()
    query(net, r, ir, code=1000)  # general: every group, within 1 s
    net.run_for(1.05)
    joined = {solicited_node(ip6("2001:db8::7")), solicited_node(ll(ih))}
    assert len(tap.messages) == 1
    assert sorted(tap.v2_records()) == sorted((EXCLUDE, g) for g in joined)
    assert h.counter("ndp")["rx_mld_queries"] == 1
    tap.messages.clear()
    group = solicited_node(ip6("2001:db8::7"))
    query(net, r, ir, group=group, dst=group)
    net.run_for(1.05)
    assert tap.v2_records() == [(EXCLUDE, group)]
    # an MLDv1 query gets MLDv1 reports, one per group, sent to the group
    tap.messages.clear()
    query(net, r, ir, v2=False)
    net.run_for(1.05)
    assert sorted((dst, icmp[0]) for _, dst, _, _, icmp in tap.messages) == sorted(
        (g, 131) for g in joined)
    for _, dst, _, _, icmp in tap.messages:
        assert int.from_bytes(icmp[8:24], "big") == dst


def test_bad_queries_are_dropped_and_mld_can_be_turned_off() -> None:
    net, h, r, _ih, ir, tap = setup()
    r.add_address(ir, "2001:db8::1/64")
    net.run_for(3.0)
    tap.messages.clear()
    query(net, r, ir, src=ip6("2001:db8::1"))
    net.run_for(1.05)
    assert h.counter("ndp").drops["mld_source_not_link_local"] == 1
    assert tap.messages == []

    net, h, r, _ih, ir, tap = setup({"ndp.mld": False})
    net.run_for(3.0)
    query(net, r, ir)
    net.run_for(1.05)
    assert tap.messages == [] and h.counter("ndp")["tx_mld_reports"] == 0


def test_max_response_codes() -> None:
    assert max_response_delay(1000, True) == 1.0
    assert max_response_delay(10000, False) == 10.0
    # RFC 3810 5.1.3: exponent 1, mantissa 0 -> (0x1000) << 4 ms
    assert max_response_delay(0x9000, True) == (0x1000 << 4) / 1000.0

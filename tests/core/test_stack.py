"""Composition, validation, dispatch and per-frame hooks of the core, with ad-hoc plugins."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from layers import CompositionError, ConfigurationError, Stack, hookimpl
from layers.frame import Frame
from layers.interface import Interface
from layers.links import Medium, MemoryLink
from layers.virtual import VirtualNetwork

TOY_ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype


class ToyProtocol:
    name = "toy"
    ethertype = TOY_ETHERTYPE
    ip_version = None
    needs_neighbour_resolver = False

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        if packet[:4] == b"boom":
            raise RuntimeError("bug in a plugin")
        self.got.append(bytes(packet))


class ToyPlugin:
    def __init__(self) -> None:
        self.proto = ToyProtocol()

    @hookimpl
    def layers_network_protocols(self, stack: Stack) -> list[Any]:
        return [self.proto]


class NeedyIP:
    name = "needy"
    ethertype = 0x0800
    ip_version = None
    needs_neighbour_resolver = True

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        pass


class NeedyPlugin:
    @hookimpl
    def layers_network_protocols(self, stack: Stack) -> list[Any]:
        return [NeedyIP()]


class LonelyTransport:
    name = "lonely"
    protocol = 253

    def receive(self, datagram: Any) -> None:
        pass

    def error(self, error: Any) -> None:
        pass


class LonelyPlugin:
    @hookimpl
    def layers_transport_protocols(self, stack: Stack) -> list[Any]:
        return [LonelyTransport()]


def test_toy_protocol_on_its_own_ethertype(vnet: VirtualNetwork) -> None:
    pa, pb = ToyPlugin(), ToyPlugin()
    a, b = vnet.new_stack([pa]), vnet.new_stack([pb])
    ia, ib = vnet.link(a, b)
    a.start()
    b.start()
    ia.send_ethernet(ib.mac, TOY_ETHERTYPE, b"hello")  # type: ignore[arg-type]
    ia.send_ethernet(b"\xff" * 6, TOY_ETHERTYPE, b"to all")
    ia.send_ethernet(b"\x02\x00\x00\x00\x00\x99", TOY_ETHERTYPE, b"not for b")
    ia.send_ethernet(ib.mac, 0x1234, b"unknown type")  # type: ignore[arg-type]
    ia.transmit(b"short")
    vnet.run_for(1)
    assert pb.proto.got == [b"hello", b"to all"]
    drops = ib.counters.drops
    assert drops == {"other_host": 1, "unknown_ethertype": 1, "truncated": 1}
    assert ib.counters["rx_frames"] == 5


@pytest.mark.internal_errors  # a plugin whose receive path raises on purpose
def test_plugin_exception_is_contained_and_counted(vnet: VirtualNetwork) -> None:
    pb = ToyPlugin()
    a, b = vnet.new_stack([]), vnet.new_stack([pb])
    ia, ib = vnet.link(a, b)
    ia.send_ethernet(ib.mac, TOY_ETHERTYPE, b"boom!")  # type: ignore[arg-type]
    ia.send_ethernet(ib.mac, TOY_ETHERTYPE, b"after")  # type: ignore[arg-type]
    vnet.run_for(1)
    assert b.counters["stack"].drops["internal_error"] == 1
    assert pb.proto.got == [b"after"]


def test_unknown_plugin_names_the_installed_ones() -> None:
    with pytest.raises(CompositionError, match=r"unknown plugin 'nope'.*installed plugins"):
        Stack(["nope"])


def test_blocked_plugin_requested_by_name_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "udp")
    with pytest.raises(CompositionError, match="disabled by LAYERS_DISABLE_PLUGINS"):
        Stack(["udp"])


def test_blocklist_removes_plugin_from_default_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "udp, tcp")
    s = Stack()
    names = {n for n, p in s.pm.list_name_plugin() if p is not None}
    assert "udp" not in names and "tcp" not in names
    assert {"arp", "ipv4", "icmp", "core"} <= names


def test_duplicate_ethertype_is_a_composition_error() -> None:
    with pytest.raises(CompositionError, match="both claim ethertype 0x88b5"):
        Stack([ToyPlugin(), _Renamed(ToyPlugin())])


class _Renamed:
    def __init__(self, inner: ToyPlugin) -> None:
        inner.proto.name = "toy2"
        self.inner = inner

    @hookimpl
    def layers_network_protocols(self, stack: Stack) -> list[Any]:
        return [self.inner.proto]


def test_transport_without_network_layer_is_explained() -> None:
    with pytest.raises(CompositionError, match="need an IPv4 network layer; add ipv4"):
        Stack([LonelyPlugin()])


def test_resolver_required_on_ethernet_but_not_on_ip_links() -> None:
    s = Stack([NeedyPlugin()])
    with pytest.raises(CompositionError, match="needs a neighbour resolver such as arp"):
        s.add_interface(MemoryLink("eth"))
    s.add_interface(MemoryLink("ipl", medium=Medium.IP))  # fine: IP medium needs none


def test_bad_link_spec_and_settings_name_the_fix() -> None:
    s = Stack([])
    with pytest.raises(ConfigurationError, match="SCHEME:NAME"):
        s.open_link("tap0")
    with pytest.raises(ConfigurationError, match="unknown link type 'wifi'"):
        s.open_link("wifi:wlan0")
    s.settings.update({"x.n": "seven", "x.flag": "maybe"})
    with pytest.raises(ConfigurationError, match=r"x.n='seven' should be an integer"):
        s.setting("x.n", 3)
    with pytest.raises(ConfigurationError, match="should be true or false"):
        s.setting("x.flag", True)
    assert s.setting("x.missing", 2.5) == 2.5


class DropOddFrames:
    """A per-frame filter: drops every second received frame."""

    def __init__(self) -> None:
        self.seen = 0
        self.after: list[str] = []

    @hookimpl(wrapper=True)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        self.seen += 1
        if self.seen % 2 == 0:
            frame.drop("filtered_by_test")
        yield
        self.after.append("dropped" if frame.dropped else "passed")


def test_frame_hooks_cost_nothing_unless_registered() -> None:
    assert Stack([])._rx_hooked is False
    assert Stack([DropOddFrames()])._rx_hooked is True


def test_frame_wrapper_filters_and_sees_outcome(vnet: VirtualNetwork) -> None:
    filt, toy = DropOddFrames(), ToyPlugin()
    a, b = vnet.new_stack([]), vnet.new_stack([filt, toy])
    ia, ib = vnet.link(a, b)
    for i in range(4):
        ia.send_ethernet(ib.mac, TOY_ETHERTYPE, bytes([i]))  # type: ignore[arg-type]
    vnet.run_for(1)
    assert toy.proto.got == [b"\x00", b"\x02"]
    assert filt.after == ["passed", "dropped", "passed", "dropped"]
    assert ib.counters.drops["filtered_by_test"] == 2


def test_report_has_interfaces_routes_counters(vnet: VirtualNetwork) -> None:
    a, _ = vnet.pair([])
    a.add_route("default", gateway="10.0.0.2")
    rep = a.report()
    assert rep["interfaces"][0]["addresses"] == ["10.0.0.1/24"]
    assert {r["origin"] for r in rep["routes"]} == {"connected", "static"}
    assert "stack" in rep["counters"]


def test_opt_in_plugins_join_only_when_named() -> None:
    # examples/framecount sets LAYERS_OPT_IN: installed, listed, but not in the default stack
    default = {n for n, p in Stack().pm.list_name_plugin() if p is not None}
    assert "framecount" not in default and "ipv4" in default
    named = Stack(["framecount"])
    assert named.pm.get_plugin("framecount") is not None and named._rx_hooked

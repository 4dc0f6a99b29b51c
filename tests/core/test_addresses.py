"""The stack's own addresses and ports: what cannot be a host's address is refused with the
reason, and a port asked for twice names the port and the --serve that took it first. Link
types a plugin adds are accepted by `layers up` like tap: and tun:."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from layers import ConfigurationError, Stack, hookimpl
from layers.cli import build_parser, compose, main
from layers.links.base import Link
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.services import start_services, stop_services
from layers.wire.addr import ip4_network

STACK = ["arp", "ipv4", "icmp", "udp", "tcp"]


@pytest.mark.parametrize(("argv_address", "why"), [
    ("foo", "'foo' is not an IPv4 address"),
    ("10.0.0.2", "'10.0.0.2' needs a prefix length, for example 10.0.0.2/24"),
    ("10.0.0.0/24", "10.0.0.0/24 is the network address of 10.0.0.0/24; give the stack a host "
                    "address, for example 10.0.0.1/24"),
    ("10.0.0.255/24", "10.0.0.255/24 is the broadcast address of 10.0.0.0/24"),
    ("0.0.0.0/0", "0.0.0.0 means 'no address'"),
    ("255.255.255.255/32", "limited broadcast"),
    ("224.0.0.1/24", "multicast"),
])
def test_addresses_that_cannot_be_the_stacks_own(
    argv_address: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["up", "--link", "tap:laddr0", "--address", argv_address]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layers: error: ") and why in err and "\n" not in err


@pytest.mark.parametrize("address", ["10.0.0.0/31", "10.0.0.1/31", "10.0.0.7/32",
                                     "192.168.0.255/23"])
def test_point_to_point_and_host_routes_keep_every_address(address: str) -> None:
    stack = Stack(["arp", "ipv4"])
    stack.add_interface(MemoryLink("m0"), address=address)
    assert stack.interfaces[0].addresses == [ip4_network(address)]


def test_a_port_asked_for_twice_names_the_port_and_the_serve() -> None:
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        stack = Stack(STACK, clock=loop.time)
        stack.add_interface(MemoryLink("m0"), address="10.0.0.2/24")
        runner = AsyncioRunner(stack, loop)
        runner.start()
        try:
            with pytest.raises(ConfigurationError) as info:
                await start_services(stack, ["echo:7", "udp-echo:7", "discard:7"])
            # nothing of the first two was left running
            again = await start_services(stack, ["echo:7", "udp-echo:7"])
            await stop_services(again)
            return str(info.value)
        finally:
            runner.stop()

    assert asyncio.run(scenario()) == (
        "--serve discard:7: tcp port 7 is already in use on this stack (by --serve echo:7); "
        "give each service its own port")


class LoopLinks:
    """A plugin adding the link type ``loop:NAME`` (an unpaired in-memory link)."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    @hookimpl
    def layers_link_drivers(self) -> Mapping[str, Callable[..., Link]]:
        def open_loop(name: str, **options: Any) -> Link:
            self.opened.append(name)
            return MemoryLink(name, mtu=options.get("mtu", 1500))

        return {"loop": open_loop}


def test_layers_up_accepts_a_link_type_a_plugin_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = LoopLinks()
    args = build_parser().parse_args(
        ["up", "--link", "loop:lp0", "--address", "10.0.0.2/24", "--mtu", "1400"])
    # the command composes by plugin names; hand it the plugin object as a test would
    monkeypatch.setattr("layers.cli.common.parse_plugin_list",
                        lambda text: ["arp", "ipv4", plugin])
    stack, iface = compose(args, lambda: 0.0)
    try:
        assert plugin.opened == ["lp0"] and iface.name == "lp0" and iface.mtu == 1400
    finally:
        stack.stop()
    args = build_parser().parse_args(["up", "--link", "wifi:wl0", "--address", "10.0.0.2/24"])
    with pytest.raises(ConfigurationError, match=r"unknown link type 'wifi' in 'wifi:wl0'; "
                                                 r"known: loop, tap, tun"):
        compose(args, lambda: 0.0)

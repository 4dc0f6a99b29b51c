"""A tiny network protocol for link tests: records what arrives, optionally echoes it back.

It claims an IEEE local-experimental ethertype, so link tests need none of the real protocol
plugins: a stack composed of the core plus this probe moves frames through interfaces and links
exactly as IPv4 would.
"""

from __future__ import annotations

from typing import Any

from layers import hookimpl
from layers.interface import Interface
from layers.links.base import Link
from layers.stack import Stack
from layers.virtual import VirtualNetwork

PROBE_ETHERTYPE = 0x88B5


class ProbeProtocol:
    name = "probe"
    ethertype: int | None = PROBE_ETHERTYPE
    ip_version: int | None = None
    needs_neighbour_resolver = False

    def __init__(self, stack: Stack, echo: bool) -> None:
        self.stack = stack
        self.echo = echo
        #: (arrival time, payload, flags) in arrival order
        self.got: list[tuple[float, bytes, int]] = []

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        data = bytes(packet)
        self.got.append((self.stack.now, data, flags))
        if self.echo and not data.startswith(b"re:"):
            # the source MAC of the frame is 8..14 bytes before the payload: not kept by the
            # stack, so reply to the one peer of this point-to-point test link
            peer = interface.link.peer_mac  # type: ignore[attr-defined]
            interface.send_ethernet(peer, PROBE_ETHERTYPE, b"re:" + data)

    @property
    def payloads(self) -> list[bytes]:
        return [p for _, p, _ in self.got]


class ProbePlugin:
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo

    @hookimpl
    def layers_network_protocols(self, stack: Stack) -> list[Any]:
        return [ProbeProtocol(stack, self.echo)]


def probe(stack: Stack) -> ProbeProtocol:
    proto: ProbeProtocol = stack.protocol("probe")
    return proto


def send_probe(src: Interface, dst: Interface, payload: bytes) -> None:
    """Send ``payload`` in a probe frame from ``src`` to ``dst``'s MAC."""
    assert dst.mac is not None
    src.send_ethernet(dst.mac, PROBE_ETHERTYPE, payload)


def probe_pair(
    net: VirtualNetwork,
    *,
    echo: bool = False,
    wrap: Any = None,
    **link_options: Any,
) -> tuple[Stack, Stack, Interface, Interface]:
    """Two started probe stacks joined by a memory link (``wrap`` wraps each end)."""
    a = net.new_stack([ProbePlugin(echo)], name="a")
    b = net.new_stack([ProbePlugin(echo)], name="b")
    ia, ib = net.link(a, b, wrap=wrap, **link_options)
    _set_peer(ia.link, ib.mac)
    _set_peer(ib.link, ia.mac)
    a.start()
    b.start()
    return a, b, ia, ib


def _set_peer(link: Link, mac: bytes | None) -> None:
    link.peer_mac = mac  # type: ignore[attr-defined]

"""Test support for the icmp plugin: a recording transport, a harness that owns the far end of
an IP-medium link (tests inject packets and read what comes out), and a datagram builder."""

from __future__ import annotations

from typing import Any

from layers_icmp import Icmp

from layers.hookspecs import hookimpl
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.protocols import IPDatagram, IPv4Service, TransportError
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.addr import IPV4_BROADCAST
from layers.wire.ipv4 import IPv4Header


class RecordingTransport:
    """A transport that records the errors ICMP hands it."""

    def __init__(self, name: str, protocol: int) -> None:
        self.name = name
        self.protocol = protocol
        self.errors: list[TransportError] = []
        self.received: list[IPDatagram] = []

    def receive(self, datagram: IPDatagram) -> None:
        self.received.append(datagram)

    def error(self, error: TransportError) -> None:
        self.errors.append(error)


class RecordingTransportPlugin:
    def __init__(self, *transports: RecordingTransport) -> None:
        self.transports = transports

    @hookimpl
    def layers_transport_protocols(self, stack: Stack) -> list[RecordingTransport]:
        return list(self.transports)


class Wire:
    """A stack on one end of an IP-medium memory link; the test holds the other end."""

    def __init__(
        self,
        plugins: list[Any],
        *,
        address: str = "10.0.0.1/24",
        settings: dict[str, Any] | None = None,
        mtu: int = 1500,
    ) -> None:
        self.net = VirtualNetwork()
        self.stack = self.net.new_stack(plugins, settings=settings)
        ours, self.peer = MemoryLink.pair(("ip0", "peer"), medium=Medium.IP, mtu=mtu)
        self.peer.attach(self.net.clock)
        self.iface = self.stack.add_interface(ours, address=address)
        self.stack.start()

    def inject(self, packet: bytes) -> None:
        self.peer.send(packet)
        self.net.run_for(0.0)

    def take(self) -> list[bytes]:
        self.net.run_for(0.0)
        out = []
        while (got := self.peer.recv()) is not None:
            out.append(got[0])
        return out


def datagram(
    wire: Wire, raw: bytes, *, flags: int = 0, broadcast: bool | None = None
) -> IPDatagram:
    """The IPDatagram ipv4 would hand a transport for the IP packet ``raw``."""
    h = IPv4Header.from_bytes(raw, verify_checksum=False)
    hlen = h.header_length
    assert h.total_length is not None
    if broadcast is None:
        broadcast = h.dst == IPV4_BROADCAST or h.dst in wire.iface.broadcasts
    return IPDatagram(
        interface=wire.iface,
        src=h.src,
        dst=h.dst,
        protocol=h.protocol,
        ttl=h.ttl,
        tos=h.tos,
        header=raw[:hlen],
        payload=raw[hlen : h.total_length],
        flags=flags,
        broadcast=broadcast,
    )


def icmp_of(w: Wire | Stack) -> Icmp:
    stack = w.stack if isinstance(w, Wire) else w
    icmp = stack.transports[1]
    assert isinstance(icmp, Icmp)
    return icmp


def ip_of(w: Wire | Stack) -> IPv4Service:
    stack = w.stack if isinstance(w, Wire) else w
    assert stack.ip is not None
    return stack.ip

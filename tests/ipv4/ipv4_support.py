"""Test support for the ipv4 plugin: ad-hoc plugins (a recording transport, a recording error
reporter, a static neighbour resolver), a capturing link wrapper, and a two-stack harness."""

from __future__ import annotations

from typing import Any

import attrs

from layers.hookspecs import hookimpl
from layers.interface import Interface
from layers.links.base import Link, LinkCapabilities, LinkWrapper, Medium, TxOffload
from layers.links.memory import MemoryLink
from layers.protocols import IPDatagram, TransportError
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4
from layers.wire.checksum import checksum

TEST_PROTO = 253  # RFC 3692 experimental protocol number


@attrs.frozen
class Got:
    """A received datagram, copied out of its memoryviews."""

    interface: Interface
    src: int
    dst: int
    protocol: int
    ttl: int
    tos: int
    header: bytes
    payload: bytes
    flags: int
    broadcast: bool
    views: bool  # header and payload arrived as memoryviews


class RecordingTransport:
    name = "rec"

    def __init__(self, protocol: int = TEST_PROTO) -> None:
        self.protocol = protocol
        self.got: list[Got] = []
        self.errors: list[TransportError] = []

    def receive(self, d: IPDatagram) -> None:
        self.got.append(
            Got(d.interface, d.src, d.dst, d.protocol, d.ttl, d.tos, bytes(d.header),
                bytes(d.payload), d.flags, d.broadcast,
                isinstance(d.header, memoryview) and isinstance(d.payload, memoryview))
        )

    def error(self, error: TransportError) -> None:
        self.errors.append(error)


class TransportPlugin:
    """Gives each stack its own RecordingTransport (``plugin.of(stack)``)."""

    def __init__(self, protocol: int = TEST_PROTO) -> None:
        self.protocol = protocol
        self.by_stack: dict[Stack, RecordingTransport] = {}

    @hookimpl
    def layers_transport_protocols(self, stack: Stack) -> list[Any]:
        t = self.by_stack[stack] = RecordingTransport(self.protocol)
        return [t]

    def of(self, stack: Stack) -> RecordingTransport:
        return self.by_stack[stack]


class RecordingErrors:
    def __init__(self) -> None:
        self.calls: list[tuple[str, IPDatagram, int]] = []

    def destination_unreachable(self, datagram: IPDatagram, code: int) -> None:
        self.calls.append(("unreachable", _copy(datagram), code))

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None:
        self.calls.append(("time_exceeded", _copy(datagram), code))

    def parameter_problem(self, datagram: IPDatagram, pointer: int) -> None:
        self.calls.append(("parameter_problem", _copy(datagram), pointer))


def _copy(d: IPDatagram) -> IPDatagram:
    return d._replace(header=bytes(d.header), payload=bytes(d.payload))


class ErrorsPlugin:
    def __init__(self) -> None:
        self.by_stack: dict[Stack, RecordingErrors] = {}

    @hookimpl
    def layers_error_reporter(self, stack: Stack) -> RecordingErrors:
        r = self.by_stack[stack] = RecordingErrors()
        return r

    def of(self, stack: Stack) -> RecordingErrors:
        return self.by_stack[stack]


class StaticResolver:
    """A neighbour resolver for memory links that knows the peer's MAC and records each call."""

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.calls: list[tuple[int, int, bytes, TxOffload | None]] = []

    def output(
        self, next_hop: int, ethertype: int, payload: bytes | bytearray | memoryview,
        offload: TxOffload | None = None,
    ) -> None:
        self.calls.append((next_hop, ethertype, bytes(payload), offload))
        link: Any = self.iface.link
        while isinstance(link, LinkWrapper):
            link = link.inner
        peer = link.peer
        if peer is not None:
            self.iface.send_ethernet(peer.mac, ethertype, payload, offload)

    def entries(self) -> list[Any]:
        return []


class ResolverPlugin:
    @hookimpl
    def layers_neighbour_resolver(self, stack: Stack, interface: Interface) -> StaticResolver:
        return StaticResolver(interface)


class Capture(LinkWrapper):
    """Records every frame sent through the link, with its offload."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.sent: list[tuple[bytes, TxOffload | None]] = []

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.sent.append((bytes(frame), offload))
        self.inner.send(frame, offload)

    @property
    def frames(self) -> list[bytes]:
        return [f for f, _ in self.sent]


class GsoMemoryLink(MemoryLink):
    """A memory link that accepts super-segments up to ``gso_max_size`` (as a TAP with
    TUNSETOFFLOAD would) and completes checksums."""

    def __init__(self, name: str = "gso0", *, mtu: int = 1500, medium: Medium = Medium.IP,
                 **kw: Any) -> None:
        super().__init__(name, mtu=mtu, medium=medium, **kw)
        self.capabilities = LinkCapabilities(
            medium=medium, mtu=mtu, gso_max_size=65536, tx_checksum=True
        )
        self._max_frame = 65536 + 14


class Harness:
    """Two stacks (``a`` and ``b``) on one captured memory link, with recording plugins."""

    def __init__(
        self,
        *,
        medium: Medium = Medium.IP,
        settings: dict[str, Any] | None = None,
        addresses: tuple[str, str] = ("10.0.0.1/24", "10.0.0.2/24"),
        mtu: int = 1500,
        extra: list[Any] | None = None,
    ) -> None:
        self.net = VirtualNetwork()
        self.tp = TransportPlugin()
        self.ep = ErrorsPlugin()
        plugins: list[Any] = ["ipv4", self.tp, self.ep, *(extra or [])]
        if medium is Medium.ETHERNET and not any(p == "arp" for p in plugins):
            plugins.append(ResolverPlugin())
        self.a = self.net.new_stack(plugins, settings=settings, name="a")
        self.b = self.net.new_stack(plugins, settings=settings, name="b")
        self.ia, self.ib = self.net.link(
            self.a, self.b, addresses=addresses, medium=medium, mtu=mtu, wrap=Capture
        )
        self.a.start()
        self.b.start()

    @property
    def cap_a(self) -> Capture:
        link = self.ia.link
        assert isinstance(link, Capture)
        return link

    @property
    def cap_b(self) -> Capture:
        link = self.ib.link
        assert isinstance(link, Capture)
        return link

    def ta(self) -> RecordingTransport:
        return self.tp.of(self.a)

    def tb(self) -> RecordingTransport:
        return self.tp.of(self.b)

    def inject(self, packet: bytes, flags: int = 0) -> None:
        """Hand ``packet`` straight to b's ipv4 as if it arrived on b's interface."""
        self.b.protocol("ipv4").receive(self.ib, memoryview(packet), flags)

    def counters(self, stack: Stack | None = None) -> Any:
        return (stack or self.b).counter("ipv4")


def ip_header(
    src: str, dst: str, payload_length: int, *, proto: int = TEST_PROTO, ident: int = 1,
    frag: int = 0, ttl: int = 64, tos: int = 0, options: bytes = b"",
) -> bytes:
    """A header built by hand (independent of the plugin), options already padded."""
    hlen = 20 + len(options)
    head = bytearray(
        bytes([0x40 | hlen // 4, tos]) + (hlen + payload_length).to_bytes(2, "big")
        + ident.to_bytes(2, "big") + frag.to_bytes(2, "big") + bytes([ttl, proto, 0, 0])
        + ip4(src).to_bytes(4, "big") + ip4(dst).to_bytes(4, "big") + options
    )
    head[10:12] = checksum(head).to_bytes(2, "big")
    return bytes(head)

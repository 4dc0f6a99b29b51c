"""Test support for the udp plugin: a recording DatagramProtocol, a harness owning the far end
of an IP-medium link (tests inject scapy-built packets and decode what comes out), and a
recording ErrorReporter double."""

from __future__ import annotations

import asyncio
from typing import Any

from scapy.layers.inet import IP

from layers.datagrams import open_datagram_endpoint
from layers.hookspecs import hookimpl
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.protocols import IPDatagram
from layers.stack import Stack
from layers.virtual import VirtualNetwork


class Recorder(asyncio.DatagramProtocol):
    """Records every call; optionally echoes what it receives."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None
        self.made = 0
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []
        self.errors: list[Exception] = []
        self.lost: list[Exception | None] = []
        self.got_datagram: asyncio.Event | None = None
        self.got_error: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append((data, addr))
        if self.echo:
            assert self.transport is not None
            self.transport.sendto(data, addr)
        if self.got_datagram is not None:
            self.got_datagram.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        if self.got_error is not None:
            self.got_error.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)

    @property
    def payloads(self) -> list[bytes]:
        return [d for d, _ in self.datagrams]


class RecordingReporter:
    """An ErrorReporter double (registered as an ad-hoc plugin object)."""

    def __init__(self) -> None:
        self.unreachable: list[tuple[IPDatagram, int]] = []

    @hookimpl
    def layers_error_reporter(self, stack: Stack) -> RecordingReporter:
        return self

    def destination_unreachable(self, datagram: IPDatagram, code: int) -> None:
        self.unreachable.append((datagram, code))

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None:
        raise AssertionError("udp never sends time exceeded")

    def parameter_problem(self, datagram: IPDatagram, pointer: int) -> None:
        raise AssertionError("udp never sends parameter problem")


class Wire:
    """A stack on one end of an IP-medium memory link; the test holds the other end."""

    def __init__(
        self,
        plugins: list[Any] | None = None,
        *,
        address: str = "10.0.0.1/24",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.net = VirtualNetwork()
        self.stack = self.net.new_stack(
            plugins if plugins is not None else ["ipv4", "icmp", "udp"], settings=settings
        )
        ours, self.peer = MemoryLink.pair(("ip0", "peer"), medium=Medium.IP)
        self.peer.attach(self.net.clock)
        self.iface = self.stack.add_interface(ours, address=address)
        self.stack.start()

    def inject(self, packet: bytes | IP, flags: int = 0) -> None:
        """Hand one IP packet to the stack (``flags``: RX_* bits as a link would set them)."""
        raw = bytes(packet)
        if flags:
            self.stack.receive(self.iface, raw, flags)
        else:
            self.peer.send(raw)
        self.net.run_until_idle()

    def sent(self) -> list[IP]:
        """Everything the stack put on the link since the last call, decoded by scapy."""
        self.net.run_until_idle()
        out = []
        while (got := self.peer.recv()) is not None:
            out.append(IP(got[0]))
        return out

    def open(self, *, echo: bool = False, **kw: Any) -> Recorder:
        _, proto = open_datagram_endpoint(self.stack, lambda: Recorder(echo), **kw)
        assert isinstance(proto, Recorder)
        return proto

    @property
    def counters(self) -> Any:
        return self.stack.counter("udp")

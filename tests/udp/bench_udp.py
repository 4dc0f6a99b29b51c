"""UDP micro-benchmarks (not collected by pytest; never asserts a timing).

    .venv/bin/python tests/udp/bench_udp.py

* ``send``: endpoint.sendto -> udp -> ipv4 -> an IP-medium link that discards (per datagram);
  with the link declaring tx checksum offload or not.
* ``receive``: a prebuilt IP packet -> stack.receive -> udp -> the protocol (per datagram).
* ``echo``: a round trip between two stacks on the virtual clock (request and reply).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from layers.datagrams import open_datagram_endpoint
from layers.links.base import Link, LinkCapabilities, Medium, TxOffload
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import build_ipv4_header, ip4
from layers.wire.udp import build_udp

PLUGINS = ["ipv4", "udp"]


class Sink(Link):
    def __init__(self, tx_checksum: bool) -> None:
        super().__init__()
        self.name = "sink"
        self.capabilities = LinkCapabilities(medium=Medium.IP, mtu=1500, tx_checksum=tx_checksum)
        self.frames = 0

    def recv(self) -> tuple[bytes, int] | None:
        return None

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.frames += 1


class Quiet(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.n += 1


def timed(label: str, n: int, fn: Callable[[], None]) -> None:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{label:48s} {best / n * 1e6:7.2f} us/datagram  ({n / best:9.0f}/s)")


def bench_send(size: int, tx_checksum: bool, n: int = 20000) -> None:
    stack = Stack(PLUGINS, clock=lambda: 0.0)
    sink = Sink(tx_checksum)
    stack.add_interface(sink, address="10.0.0.1/24")
    stack.start()
    t, _ = open_datagram_endpoint(stack, Quiet, remote_addr=("10.0.0.2", 9))
    data = b"x" * size
    send = t.sendto

    def run() -> None:
        for _ in range(n):
            send(data)

    timed(f"send {size:5d} B (link tx_checksum={tx_checksum})", n, run)


def bench_receive(size: int, n: int = 20000) -> None:
    stack = Stack(PLUGINS, clock=lambda: 0.0)
    sink = Sink(False)
    iface = stack.add_interface(sink, address="10.0.0.1/24")
    stack.start()
    open_datagram_endpoint(stack, Quiet, local_addr=("0.0.0.0", 5000))
    src, dst = ip4("10.0.0.2"), ip4("10.0.0.1")
    seg = bytes(build_udp(src, dst, 40000, 5000, b"y" * size))
    packet = bytes(build_ipv4_header(src, dst, 17, len(seg))) + seg
    receive = stack.receive

    def run() -> None:
        for _ in range(n):
            receive(iface, packet, 0)

    timed(f"receive {size:5d} B", n, run)


def bench_echo(size: int, n: int = 5000) -> None:
    net = VirtualNetwork()
    a, b = net.pair(PLUGINS, medium=Medium.IP)

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(data, addr)  # type: ignore[attr-defined]

    open_datagram_endpoint(b, Echo, local_addr=("0.0.0.0", 7))
    t, _ = open_datagram_endpoint(a, Quiet, remote_addr=("10.0.0.2", 7))
    data = b"z" * size

    def run() -> None:
        for _ in range(n):
            t.sendto(data)
            net.run_until_idle()

    timed(f"echo round trip {size:5d} B (virtual clock)", n, run)


if __name__ == "__main__":
    for size in (64, 1472):
        bench_send(size, False)
        bench_send(size, True)
    for size in (64, 1472):
        bench_receive(size)
    for size in (64, 1472):
        bench_echo(size)

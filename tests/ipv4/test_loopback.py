"""The loopback interface ``lo`` (127.0.0.1/8), as Linux has it: TCP, UDP and ping to
127.0.0.1, to other 127/8 addresses and to the stack's own address are delivered locally, one
poll later; nothing for 127/8 ever leaves on a real link; ``ipv4.loopback=false`` removes lo
and 127/8 is then unreachable (ENETUNREACH)."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from layers.cli.report import format_netstat, format_routes
from layers.links.base import Medium
from layers.links.loopback import LOOPBACK_MTU
from layers.links.memory import MemoryLink
from layers.ping import ping
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.wire import build_ipv4_header, ip4

OWN = "10.0.0.1"
PLUGINS = ["ipv4", "icmp", "udp", "tcp"]


class Echo(asyncio.Protocol):
    """Server side: sends back what it reads, closes on EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.close()
        return False


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False


class Datagrams:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, int, int]] = []
        self.errors: list[OSError] = []

    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        self.got.append((data, src, sport))

    def on_error(self, exc: OSError) -> None:
        self.errors.append(exc)

    def on_close(self, exc: OSError | None) -> None:
        pass


def one_stack(settings: dict[str, Any] | None = None) -> tuple[Stack, VirtualClock, MemoryLink]:
    """A stack with 10.0.0.1/24 on a memory link whose far end the test holds (nobody reads
    it but the test), on a virtual clock the test advances by polling."""
    clock = VirtualClock()
    near, far = MemoryLink.pair(medium=Medium.IP)
    stack = Stack(PLUGINS, clock=clock, settings={"tcp.secret": "ab" * 16, **(settings or {})})
    stack.add_interface(near, address=f"{OWN}/24")
    stack.add_route("default", gateway="10.0.0.254")
    stack.start()
    return stack, clock, far


def run(stack: Stack, clock: VirtualClock, seconds: float) -> None:
    end = clock() + seconds
    while True:
        stack.poll()
        deadline = stack.next_deadline()
        if deadline is None or deadline > end:
            break
        clock.advance_to(max(deadline, clock()))
    clock.advance_to(end)
    stack.poll()


def tcp_echo(stack: Stack, clock: VirtualClock, dst: str, size: int) -> Client:
    tcp = stack.protocol("tcp")
    tcp.listen(Echo, 0, 7)
    client = Client()
    conn = tcp.connect(client, ip4(dst), 7)
    run(stack, clock, 0.01)
    payload = bytes(range(256)) * (size // 256)
    conn.write(payload)
    conn.write_eof()
    run(stack, clock, 1.0)
    assert bytes(client.data) == payload
    assert client.eof
    return client


def test_lo_is_there_with_its_local_route() -> None:
    stack, _clock, _far = one_stack()
    lo = stack.loopback
    assert lo is not None and lo.name == "lo" and lo.up
    assert lo.mtu == LOOPBACK_MTU and lo.medium is Medium.IP
    assert lo.capabilities.tx_checksum and lo.capabilities.rx_checksum
    assert lo.addresses == [(ip4("127.0.0.1"), 8)]
    assert stack.interface("lo") is lo
    assert lo not in stack.interfaces  # runners poll links; lo has none to poll
    report = stack.report()
    assert [i["name"] for i in report["interfaces"]] == ["lo", "mem0"]
    local = [r for r in report["routes"] if r["interface"] == "lo"]
    assert local == [{"destination": "127.0.0.0", "prefix_length": 8, "netmask": "255.0.0.0",
                      "gateway": "0.0.0.0", "interface": "lo", "metric": 0, "origin": "local"}]
    assert "127.0.0.0" in format_routes(report) and "lo" in format_routes(report)
    assert "lo      UP Type:IP MTU:65536" in format_netstat(report)
    assert "Inet addr:127.0.0.1/255.0.0.0" in format_netstat(report)


@pytest.mark.parametrize("dst", ["127.0.0.1", "127.1.2.3", OWN])
def test_tcp_echo_to_ourselves(dst: str) -> None:
    stack, clock, far = one_stack()
    tcp_echo(stack, clock, dst, 200_000)
    assert far.recv() is None and far.stats.rx_frames == 0  # nothing left on the real link
    lo = stack.loopback
    assert lo is not None and lo.counters["rx_frames"] == lo.counters["tx_frames"] >= 8
    assert stack.counters["tcp"]["InErrs"] == 0
    assert stack.counters["ipv4"]["OutNoRoutes"] == 0


def test_tcp_over_lo_uses_its_mtu_and_skips_checksums() -> None:
    stack, clock, _far = one_stack()
    tcp = stack.protocol("tcp")
    tcp.listen(Echo, 0, 7)
    conn = tcp.connect(Client(), ip4("127.0.0.1"), 7)
    run(stack, clock, 0.01)
    assert stack.protocol("ipv4").path_mtu(ip4("127.0.0.1")) == 65535
    assert conn.adv_mss == 65535 - 40  # Linux's lo: segments of up to 64 KiB
    # the transport leaves its checksum to lo (partial, as with NEEDS_CSUM), and the
    # receiving side trusts it: a checked partial checksum would have been an error
    assert conn._tx_csum
    conn.write(bytes(300_000))
    run(stack, clock, 1.0)
    lo = stack.loopback
    assert lo is not None and lo.counters["tx_frames"] < 40
    assert stack.counters["tcp"]["InErrs"] == 0  # bad checksums count here


def test_udp_to_ourselves() -> None:
    stack, clock, far = one_stack()
    udp = stack.protocol("udp")
    server, client = Datagrams(), Datagrams()
    udp.open_datagram_endpoint(server, local_port=5353)
    ep = udp.open_datagram_endpoint(client)
    for dst in ("127.0.0.1", "127.9.9.9", OWN):
        ep.sendto(b"to " + dst.encode(), ip4(dst), 5353)
    run(stack, clock, 0.01)
    assert [(d, src) for d, src, _ in server.got] == [
        (b"to 127.0.0.1", ip4("127.0.0.1")),
        (b"to 127.9.9.9", ip4("127.0.0.1")),  # lo's address is the source, as in Linux
        (b"to " + OWN.encode(), ip4(OWN)),
    ]
    # a closed port on 127.0.0.1 answers port unreachable, as Linux's lo does
    refused = Datagrams()
    udp.open_datagram_endpoint(refused, remote=(ip4("127.0.0.1"), 9)).sendto(b"nobody")
    run(stack, clock, 0.01)
    assert [e.errno for e in refused.errors] == [errno.ECONNREFUSED]
    assert far.stats.rx_frames == 0


def test_delivery_is_deferred_to_the_next_poll() -> None:
    stack, _clock, _far = one_stack()
    server = Datagrams()
    udp = stack.protocol("udp")
    udp.open_datagram_endpoint(server, local_port=5353)
    udp.open_datagram_endpoint(Datagrams()).sendto(b"x", ip4("127.0.0.1"), 5353)
    assert server.got == []  # never re-entrant
    stack.poll()
    assert [d for d, _, _ in server.got] == [b"x"]


def test_a_frame_written_on_lo_is_received_one_poll_later() -> None:
    stack, _clock, _far = one_stack()
    server = Datagrams()
    udp = stack.protocol("udp")
    udp.open_datagram_endpoint(server, local_port=5353)
    lo = stack.loopback
    assert lo is not None
    payload = (40000).to_bytes(2, "big") + (5353).to_bytes(2, "big") + (11).to_bytes(2, "big") \
        + b"\x00\x00raw"
    header = build_ipv4_header(ip4("127.0.0.5"), ip4("127.0.0.1"), 17, len(payload))
    lo.transmit(header + payload)
    assert server.got == []
    stack.poll()
    assert server.got == [(b"raw", ip4("127.0.0.5"), 40000)]


def test_ping_127_addresses_on_the_virtual_clock() -> None:
    stack, clock, far = one_stack()
    icmp = stack.protocol("icmp")
    replies: list[Any] = []
    for seq, dst in enumerate(("127.0.0.1", "127.0.0.2", OWN)):
        icmp.echo(ip4(dst), ident=7, seq=seq, payload=b"ping", callback=replies.append)
    run(stack, clock, 0.01)
    # each answered from the address it was sent to, as Linux's lo does
    assert [r.src for r in replies] == [ip4("127.0.0.1"), ip4("127.0.0.2"), ip4(OWN)]
    c = stack.counters["icmp"]
    assert c["out_echos"] == 3 and c["out_echo_reps"] == 3
    assert far.stats.rx_frames == 0


def test_layers_ping_127_0_0_1_on_asyncio() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        near, far = MemoryLink.pair(medium=Medium.IP)
        stack = Stack(["ipv4", "icmp"], clock=loop.time)
        stack.add_interface(near, address=f"{OWN}/24")
        runner = AsyncioRunner(stack, loop)
        runner.start()
        try:
            results = [r async for r in ping(stack, "127.0.0.1", count=3, interval=0.01)]
        finally:
            runner.stop()
        assert far.stats.rx_frames == 0
        return results

    results = asyncio.run(main())
    assert len(results) == 3 and all(r.error is None and r.rtt is not None for r in results)


def test_lo_off_makes_127_unreachable() -> None:
    stack, clock, far = one_stack({"ipv4.loopback": False})
    assert stack.loopback is None
    assert [i["name"] for i in stack.report()["interfaces"]] == ["mem0"]
    assert not any(r.interface.name == "lo" for r in stack.routes)
    with pytest.raises(OSError) as err:
        stack.protocol("tcp").connect(Client(), ip4("127.0.0.1"), 7)
    assert err.value.errno == errno.ENETUNREACH
    client = Datagrams()
    ep = stack.protocol("udp").open_datagram_endpoint(client, local_addr=ip4(OWN))
    with pytest.raises(OSError) as err:
        ep.sendto(b"x", ip4("127.0.0.1"), 9)
    assert err.value.errno == errno.ENETUNREACH
    run(stack, clock, 0.01)
    assert stack.counters["ipv4"]["OutNoRoutes"] == 1
    assert far.stats.rx_frames == 0  # not sent out by the default route either
    # our own address still loops back without lo
    tcp_echo(stack, clock, OWN, 1024)

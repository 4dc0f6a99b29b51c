"""IPV6_V6ONLY as Linux's default (net.ipv6.bindv6only=0): TCP listeners and UDP endpoints on
``::`` take IPv4 too unless ``v6only``; ``ipv6.bindv6only=1`` flips the default; IPv4 peers of
a dual-stack socket are named ``::ffff:a.b.c.d``; bind conflicts follow Linux's."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from layers.datagrams import open_datagram_endpoint
from layers.errors import ConfigurationError
from layers.stack import Stack
from layers.streams import _address
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4
from layers.wire.ipv6 import ANY6, bind_overlap, ip6, ip_text, unmap

A6, B6, A4, B4 = "2001:db8::1", "2001:db8::2", "10.0.0.1", "10.0.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "ipv6", "icmpv6", "ndp", "tcp", "udp"]


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.data = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def dual_pair(settings: dict[str, Any] | None = None) -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    s = {"ndp.dad_transmits": 0, "tcp.secret": "ab" * 16, **(settings or {})}
    a = net.new_stack(PLUGINS, settings=s, name="a")
    b = net.new_stack(PLUGINS, settings=s, name="b")
    ia, ib = net.link(a, b, addresses=(f"{A4}/24", f"{B4}/24"), latency=0.002)
    a.add_address(ia, f"{A6}/64")
    b.add_address(ib, f"{B6}/64")
    a.start()
    b.start()
    return net, a, b


def connect(net: VirtualNetwork, a: Stack, host: int, port: int) -> BaseException | None:
    done: list[BaseException | None] = []
    a.protocol("tcp").connect(Sink(), host, port, on_connected=done.append)
    assert net.run_until_true(lambda: bool(done), 5)
    net.run_for(0.05)  # the server completes with the handshake's last ACK
    return done[0]


def test_a_tcp_listener_on_any6_takes_both_families_by_default() -> None:
    net, a, b = dual_pair()
    got: list[Sink] = []

    def accept() -> Sink:
        got.append(Sink())
        return got[-1]

    b.protocol("tcp").listen(accept, ANY6, 80)
    assert connect(net, a, ip4(B4), 80) is None
    assert connect(net, a, ip6(B6), 80) is None
    assert len(got) == 2
    # the IPv4 peer as a dual-stack socket names it on Linux: IPv4-mapped
    assert got[0].transport.get_extra_info("peername")[0] == f"::ffff:{A4}"
    assert got[0].transport.get_extra_info("sockname") == (f"::ffff:{B4}", 80)
    assert got[1].transport.get_extra_info("peername")[0] == A6
    # the connection itself is IPv4: the report and the wire say so
    rows = {r["remote"] for r in b.report()["connections"]}
    assert any(r.startswith(f"{A4}:") for r in rows), rows
    assert b.counter("ipv4")["OutRequests"] > 0


def test_v6only_refuses_ipv4_and_bindv6only_makes_it_the_default() -> None:
    net, a, b = dual_pair()
    b.protocol("tcp").listen(Sink, ANY6, 80, v6only=True)
    refused = connect(net, a, ip4(B4), 80)
    assert isinstance(refused, OSError) and refused.errno == errno.ECONNREFUSED
    assert connect(net, a, ip6(B6), 80) is None

    net, a, b = dual_pair({"ipv6.bindv6only": 1})
    b.protocol("tcp").listen(Sink, ANY6, 80)
    refused = connect(net, a, ip4(B4), 80)
    assert isinstance(refused, OSError) and refused.errno == errno.ECONNREFUSED
    b.protocol("tcp").listen(Sink, ANY6, 81, v6only=False)  # the socket option still wins
    assert connect(net, a, ip4(B4), 81) is None


def test_tcp_bind_conflicts_follow_linux() -> None:
    _net, _a, b = dual_pair()
    tcp = b.protocol("tcp")
    tcp.listen(Sink, ANY6, 80)  # dual-stack: covers 0.0.0.0:80 and every IPv4 address
    for host in (0, ip4(B4), ANY6, ip6(B6)):
        with pytest.raises(OSError) as exc:
            tcp.listen(Sink, host, 80)
        assert exc.value.errno == errno.EADDRINUSE
    tcp.listen(Sink, ANY6, 81, v6only=True)
    tcp.listen(Sink, 0, 81)  # an IPv6-only :: leaves IPv4 free
    tcp.listen(Sink, 0, 82)
    with pytest.raises(OSError):
        tcp.listen(Sink, ANY6, 82)  # a dual-stack :: would take 0.0.0.0:82's addresses
    tcp.listen(Sink, ANY6, 82, v6only=True)


def test_overlap_and_mapping_helpers() -> None:
    assert bind_overlap(ANY6, False, ip4(B4), True)
    assert not bind_overlap(ANY6, True, ip4(B4), True)
    assert bind_overlap(0, True, ip4(B4), True) and not bind_overlap(0, True, ip6(B6), True)
    assert bind_overlap(ANY6, True, ip6(B6), True)
    assert not bind_overlap(ip4(A4), True, ip4(B4), True)
    assert ip_text(ip4(A4), True) == "::ffff:10.0.0.1" and ip_text(ip6(A6), True) == A6
    assert unmap(ip6("::ffff:10.0.0.2")) == ip4(B4) and unmap(ip6(B6)) == ip6(B6)
    # text an application got from a dual-stack socket goes back as IPv4
    assert _address("::ffff:10.0.0.2", "host") == ip4(B4)
    with pytest.raises(ConfigurationError):
        _address("::ffff:10.0.0.300", "host")


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))


def endpoint(stack: Stack, local: tuple[str, int], **kwargs: Any) -> Recorder:
    _, proto = open_datagram_endpoint(stack, Recorder, local_addr=local, **kwargs)
    assert isinstance(proto, Recorder)
    return proto


def test_udp_on_any6_takes_ipv4_by_default_named_mapped_and_answers_it() -> None:
    net, a, b = dual_pair()
    server = endpoint(b, ("::", 5353))
    client = endpoint(a, ("0.0.0.0", 4000))
    client6 = endpoint(a, ("::", 4001), v6only=True)
    client.transport.sendto(b"over ipv4", (B4, 5353))
    client6.transport.sendto(b"over ipv6", (B6, 5353))
    net.run_for(0.5)
    assert sorted(server.got) == [(b"over ipv4", (f"::ffff:{A4}", 4000)),
                                  (b"over ipv6", (A6, 4001))]
    server.transport.sendto(b"back", (f"::ffff:{A4}", 4000))  # the mapped name goes back
    net.run_for(0.5)
    assert client.got == [(b"back", (B4, 5353))]
    # bind conflicts as Linux's: the dual-stack :: holds 0.0.0.0:5353 too
    with pytest.raises(OSError) as exc:
        open_datagram_endpoint(b, Recorder, local_addr=("0.0.0.0", 5353))
    assert exc.value.errno == errno.EADDRINUSE


def test_udp_v6only_and_bindv6only() -> None:
    for settings, kwargs in (({}, {"v6only": True}), ({"ipv6.bindv6only": 1}, {})):
        net, a, b = dual_pair(settings)
        server = endpoint(b, ("::", 5353), **kwargs)
        client = endpoint(a, ("0.0.0.0", 4000))
        client.transport.sendto(b"over ipv4", (B4, 5353))
        net.run_for(0.5)
        assert server.got == []
        assert b.counter("udp")["NoPorts"] == 1  # port unreachable, as for no socket
        # an IPv4-only endpoint can share the port with an IPv6-only ::
        four = endpoint(b, ("0.0.0.0", 5353))
        client.transport.sendto(b"again", (B4, 5353))
        net.run_for(0.5)
        assert four.got == [(b"again", (A4, 4000))]

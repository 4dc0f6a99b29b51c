"""TCP over IPv6 between two stacks on the virtual clock: a transfer both ways with the IPv6
pseudo-header, the MSS from the IPv6 header size, and IPv4 beside it on the same stacks
(listeners on :: with and without IPV6_V6ONLY: test_dualstack.py)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
from typing import Any

import pytest

from layers.errors import ConfigurationError
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.ipv6 import ANY6, ip6

A6, B6, A4, B4 = "2001:db8::1", "2001:db8::2", "10.0.0.1", "10.0.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "ipv6", "icmpv6", "ndp", "tcp", "udp"]


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: Any = None
        self.eof = False
        self.lost: Exception | bool | None = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep our half open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


def dual_pair() -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    s = {"ndp.dad_transmits": 0, "tcp.secret": "ab" * 16}
    a = net.new_stack(PLUGINS, settings=s, name="a")
    b = net.new_stack(PLUGINS, settings=s, name="b")
    ia, ib = net.link(a, b, addresses=(f"{A4}/24", f"{B4}/24"), latency=0.002)
    a.add_address(ia, f"{A6}/64")
    b.add_address(ib, f"{B6}/64")
    a.start()
    b.start()
    return net, a, b


def test_tcp_transfer_over_ipv6_both_ways() -> None:
    net, a, b = dual_pair()
    servers: list[Sink] = []

    def accept() -> Sink:
        servers.append(Sink())
        return servers[-1]

    b.protocol("tcp").listen(accept, ANY6, 80)
    client = Sink()
    conn = a.protocol("tcp").connect(client, ip6(B6), 80)
    assert net.run_until_true(lambda: client.transport is not None and bool(servers), 5)
    assert conn.mss == 1500 - 40 - 20 - 12  # IPv6 and TCP headers, timestamps
    payload = bytes(range(256)) * 400  # 100 kB, fragments never needed
    client.transport.write(payload)
    client.transport.write_eof()
    assert net.run_until_true(lambda: servers[0].eof, 10)
    assert hashlib.sha256(servers[0].data).digest() == hashlib.sha256(payload).digest()
    servers[0].transport.write(b"reply over IPv6")
    servers[0].transport.close()
    assert net.run_until_true(lambda: client.eof, 10)
    assert bytes(client.data) == b"reply over IPv6"
    rows = {r["local"]: r for r in a.report()["connections"]}
    assert any(k.startswith("2001:db8::1:") for k in rows), rows
    assert b.counter("ipv6")["InDelivers"] > 50 and b.counter("tcp")["InCsumErrors"] == 0
    assert a.counter("ipv4")["OutRequests"] == 0  # nothing went over IPv4


def test_streams_api_takes_ipv6_text() -> None:
    from layers.streams import _address

    assert _address("2001:db8::2", "host") == ip6(B6)
    assert _address("::", "host") == ANY6
    with pytest.raises(ConfigurationError, match="IPv6"):
        _address("2001:db8::zz", "host")


def test_udp_over_ipv6_and_port_unreachable() -> None:
    net, a, b = dual_pair()
    got: list[tuple[bytes, int]] = []
    errors: list[Exception] = []

    class Handler:
        def on_datagram(self, data: bytes, src: int, sport: int) -> None:
            got.append((data, src))

        def on_error(self, exc: OSError) -> None:
            errors.append(exc)

        def on_close(self, exc: OSError | None) -> None:
            pass

    udp_b, udp_a = b.protocol("udp"), a.protocol("udp")
    udp_b.open_datagram_endpoint(Handler(), local_addr=ANY6, local_port=5353)
    ep = udp_a.open_datagram_endpoint(Handler(), remote=(ip6(B6), 5353))
    ep.sendto(b"over ipv6")
    net.run_for(0.5)
    assert got == [(b"over ipv6", ip6(A6))]
    # nobody on the port: ICMPv6 port unreachable reaches the connected endpoint
    ep2 = udp_a.open_datagram_endpoint(Handler(), remote=(ip6(B6), 5354))
    ep2.sendto(b"nobody")
    net.run_for(0.5)
    assert b.counter("icmpv6")["out_errors"] == 1
    assert errors and getattr(errors[0], "errno", None) == errno.ECONNREFUSED


def test_syn_cookies_carry_an_ipv6_connection() -> None:
    net = VirtualNetwork()
    s = {"ndp.dad_transmits": 0, "tcp.secret": "ab" * 16, "tcp.syncookies": 2}
    a = net.new_stack(PLUGINS, settings=s, name="a")
    b = net.new_stack(PLUGINS, settings=s, name="b")
    net.link(a, b, addresses=(f"{A6}/64", f"{B6}/64"), latency=0.002)
    a.start()
    b.start()
    server = Sink()
    b.protocol("tcp").listen(lambda: server, ANY6, 80)
    client = Sink()
    a.protocol("tcp").connect(client, ip6(B6), 80)
    assert net.run_until_true(lambda: client.transport is not None, 5)
    client.transport.write(b"through a cookie")
    assert net.run_until_true(lambda: bytes(server.data) == b"through a cookie", 5)
    assert not a.internal_failures and not b.internal_failures

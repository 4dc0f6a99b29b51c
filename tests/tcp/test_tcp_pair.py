"""Two stacks on a VirtualNetwork: bulk transfers intact, with and without seeded loss,
duplication and reordering (FaultLink), echo both ways, reports and counters."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from tcp_support import Recorder

from layers.links.base import Link, Medium
from layers.links.faults import FaultLink
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4

B = ip4("10.0.0.2")


def pair(settings: dict[str, Any] | None = None, *, wrap: Any = None, latency: float = 0.001,
         medium: Medium = Medium.IP, mtu: int = 1500) -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    plugins = ["ipv4", "tcp"] if medium is Medium.IP else ["arp", "ipv4", "tcp"]
    merged = {"tcp.secret": "ab" * 16, **(settings or {})}
    a = net.new_stack(plugins, settings=merged, name="a")
    b = net.new_stack(plugins, settings=merged, name="b")
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=latency, medium=medium,
             wrap=wrap, mtu=mtu)
    a.start()
    b.start()
    return net, a, b


def transfer(net: VirtualNetwork, a: Stack, b: Stack, payload: bytes, *,
             timeout: float = 600.0, **options: Any) -> tuple[Recorder, Recorder, Any]:
    servers: list[Recorder] = []

    def factory() -> Recorder:
        p = Recorder()
        servers.append(p)
        return p

    b.protocol("tcp").listen(factory, 0, 5001, **options)
    client = Recorder()
    conn = a.protocol("tcp").connect(client, B, 5001, **options)
    assert net.run_until_true(lambda: client.kinds() == ["made"], timeout=30)
    conn.write(payload)
    conn.write_eof()
    assert net.run_until_true(lambda: bool(servers) and "eof" in servers[0].kinds(),
                              timeout=timeout), (len(servers[0].data) if servers else None)
    server = servers[0]
    server.transport.close()
    assert net.run_until_true(lambda: "lost" in client.kinds() and "lost" in server.kinds(),
                              timeout=60)
    return client, server, conn


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def test_bulk_transfer_clean() -> None:
    net, a, b = pair()
    data = blob(4 << 20)
    client, server, conn = transfer(net, a, b, data)
    assert hashlib.sha256(server.data).digest() == hashlib.sha256(data).digest()
    assert client.lost is None and server.lost is None
    ca, cb = a.counters["tcp"], b.counters["tcp"]
    assert ca["RetransSegs"] == 0 and cb["InErrs"] == 0
    assert ca["ActiveOpens"] == 1 and cb["PassiveOpens"] == 1
    assert ca["CurrEstab"] == 0 and cb["CurrEstab"] == 0
    assert conn.state.name == "TIME_WAIT"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_transfer_with_loss_and_reordering(seed: int) -> None:
    def wrap(link: Link) -> Link:
        return FaultLink(link, loss=0.02, reorder=0.02, duplicate=0.01, seed=seed)

    net, a, b = pair(wrap=wrap)
    data = blob(2 << 20, seed)
    _client, server, _ = transfer(net, a, b, data)
    assert bytes(server.data) == data
    ca = a.counters["tcp"]
    assert ca["RetransSegs"] > 0
    assert ca["FastRetransmits"] > 0  # most losses are repaired without waiting for the RTO


def test_bulk_transfer_with_loss_and_sack() -> None:
    def wrap(link: Link) -> Link:
        return FaultLink(link, loss=0.03, reorder=0.02, seed=11)

    net, a, b = pair({"tcp.sack": True}, wrap=wrap)
    data = blob(2 << 20, 5)
    _, server, conn = transfer(net, a, b, data)
    assert bytes(server.data) == data
    assert conn.sack_ok


def test_transfer_with_corruption_is_caught_by_checksums() -> None:
    def wrap(link: Link) -> Link:
        return FaultLink(link, corrupt=0.02, seed=4)

    net, a, b = pair(wrap=wrap)
    data = blob(512 << 10, 9)
    _, server, _ = transfer(net, a, b, data)
    assert bytes(server.data) == data
    # corrupted IP headers die in ipv4, corrupted segments here
    assert a.counters["tcp"]["InCsumErrors"] + b.counters["tcp"]["InCsumErrors"] > 0


def test_transfer_on_ethernet_with_arp_and_small_mtu() -> None:
    net, a, b = pair(medium=Medium.ETHERNET, mtu=576)
    data = blob(300_000, 3)
    _, server, conn = transfer(net, a, b, data)
    assert bytes(server.data) == data
    assert conn.mss == 576 - 40 - 12


def test_plain_options_transfer() -> None:
    net, a, b = pair({"tcp.timestamps": False, "tcp.window_scaling": False})
    data = blob(1 << 20, 4)
    _, server, conn = transfer(net, a, b, data)
    assert bytes(server.data) == data
    assert conn.snd_wscale == 0 and not conn.ts_ok


def test_echo_both_directions_and_report() -> None:
    net, a, b = pair()
    servers: list[Recorder] = []

    def factory() -> Recorder:
        p = Recorder(echo=True)
        servers.append(p)
        return p

    b.protocol("tcp").listen(factory, 0, 7)
    client = Recorder()
    conn = a.protocol("tcp").connect(client, B, 7, nodelay=True)
    assert net.run_until_true(lambda: client.kinds() == ["made"])
    for i in range(50):
        conn.write(b"message %d;" % i)
        net.run_for(0.01)
    want = b"".join(b"message %d;" % i for i in range(50))
    assert net.run_until_true(lambda: bytes(client.data) == want)
    rep = a.report()
    (row,) = rep["connections"]
    assert row["proto"] == "tcp" and row["state"] == "ESTABLISHED"
    assert row["remote"] == "10.0.0.2:7" and row["local"].startswith("10.0.0.1:")
    assert {"send_q", "recv_q"} <= set(row)
    lst = b.report()["listeners"]
    assert lst[0]["local"] == "0.0.0.0:7" and lst[0]["state"] == "LISTEN"
    assert a.counters["tcp"]["CurrEstab"] == 1


def test_refused_between_stacks() -> None:
    net, a, _b = pair()
    results: list[Any] = []
    a.protocol("tcp").connect(Recorder(), B, 9, on_connected=results.append)
    assert net.run_until_true(lambda: bool(results))
    assert isinstance(results[0], ConnectionRefusedError)


def test_connect_to_silent_host_times_out() -> None:
    net, a, _b = pair({"tcp.syn_retries": 2})
    results: list[Any] = []
    a.protocol("tcp").connect(Recorder(), ip4("10.0.0.77"), 9, on_connected=results.append)
    assert net.run_until_true(lambda: bool(results), timeout=60)
    assert isinstance(results[0], TimeoutError)


def test_stack_stop_aborts_connections() -> None:
    net, a, b = pair()
    b.protocol("tcp").listen(Recorder, 0, 7)
    client = Recorder()
    a.protocol("tcp").connect(client, B, 7)
    assert net.run_until_true(lambda: client.kinds() == ["made"])
    a.stop()
    assert isinstance(client.lost, ConnectionAbortedError)
    assert a.protocol("tcp").conns == {}


def test_connection_to_our_own_address() -> None:
    net, a, _b = pair()
    server: list[Recorder] = []

    def factory() -> Recorder:
        p = Recorder(echo=True)
        server.append(p)
        return p

    tcp = a.protocol("tcp")
    tcp.listen(factory, 0, 7)
    client = Recorder()
    conn = tcp.connect(client, ip4("10.0.0.1"), 7, nodelay=True)
    assert net.run_until_true(lambda: client.kinds() == ["made"])
    conn.write(b"to myself")
    assert net.run_until_true(lambda: bytes(client.data) == b"to myself")
    conn.close()
    assert net.run_until_true(lambda: "lost" in client.kinds())

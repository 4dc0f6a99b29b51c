"""layers.blocking: two stacks, each in its own background thread, joined by a memory link;
the test's thread uses them the way a socket user would. No root needed."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from collections.abc import Iterator

import pytest

from layers.blocking import BlockingStack, stack
from layers.errors import ConfigurationError
from layers.links.base import Medium
from layers.links.memory import MemoryLink

PLUGINS = ["arp", "ipv4", "icmp", "udp", "tcp"]
SETTINGS = {"tcp.msl": 0.5}


@pytest.fixture
def two() -> Iterator[tuple[BlockingStack, BlockingStack]]:
    la, lb = MemoryLink.pair(("ba", "bb"), medium=Medium.ETHERNET)
    a = stack(la, "10.0.0.1/24", plugins=PLUGINS, settings=SETTINGS)
    b = stack(lb, "10.0.0.2/24", plugins=PLUGINS, settings=SETTINGS)
    with a, b:
        yield a, b


def test_connect_send_recv_and_close(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    server = b.listen(7000)
    assert server.getsockname() == ("0.0.0.0", 7000)
    conn = a.connect(("10.0.0.2", 7000), timeout=5)
    peer, addr = server.accept()
    assert addr == conn.getsockname()
    assert conn.getpeername() == ("10.0.0.2", 7000)
    assert conn.send(b"ping") == 4
    assert peer.recv_exactly(4) == b"ping"
    peer.sendall(b"pong")
    assert conn.recv(100) == b"pong"
    conn.close()
    assert peer.recv(100) == b""  # the FIN
    peer.close()
    with pytest.raises(OSError):
        conn.recv(1)
    server.close()


def test_bulk_both_ways_from_threads(two: tuple[BlockingStack, BlockingStack]) -> None:
    """An echo server running in a thread of its own, a client writing and reading at once."""
    a, b = two
    server = b.listen(7001)
    data = random.Random(3).randbytes(2 << 20)

    def echo() -> None:
        peer, _ = server.accept()
        while chunk := peer.recv(65536):
            peer.sendall(chunk)
        peer.shutdown(socket.SHUT_WR)
        peer.close()

    t = threading.Thread(target=echo)
    t.start()
    conn = a.connect(("10.0.0.2", 7001))
    conn.settimeout(30)
    got = bytearray()

    def reader() -> None:
        while chunk := conn.recv(65536):
            got.extend(chunk)

    r = threading.Thread(target=reader)
    r.start()
    view = memoryview(data)
    for i in range(0, len(data), 100_000):
        conn.sendall(view[i : i + 100_000])
    conn.shutdown(socket.SHUT_WR)
    r.join(30)
    t.join(30)
    assert not r.is_alive() and not t.is_alive()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    conn.close()


def test_half_close_keeps_the_other_direction(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    server = b.listen(7002)
    conn = a.connect(("10.0.0.2", 7002), timeout=5)
    peer, _ = server.accept()
    peer.settimeout(5)
    conn.shutdown(socket.SHUT_WR)
    assert peer.recv(10) == b""
    peer.sendall(b"after your FIN")
    assert conn.recv_exactly(14) == b"after your FIN"
    with pytest.raises(BrokenPipeError):
        conn.sendall(b"no")
    peer.close()
    assert conn.recv(10) == b""
    conn.close()


def test_refused_timeout_and_reset(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    with pytest.raises(ConnectionRefusedError):
        a.connect(("10.0.0.2", 7999), timeout=5)
    server = b.listen(7003)
    conn = a.connect(("10.0.0.2", 7003), timeout=5)
    peer, _ = server.accept()
    conn.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn.recv(10)
    assert conn.gettimeout() == 0.2
    with pytest.raises(ValueError):
        conn.settimeout(0)
    # the connection is still usable after a timeout
    peer.sendall(b"late")
    assert conn.recv(10) == b"late"
    peer.abort()
    conn.settimeout(5)
    with pytest.raises(ConnectionResetError):
        while conn.recv(10):
            pass
    conn.close()


def test_accept_timeout_and_listener_close(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    server = b.listen(0)
    host, port = server.getsockname()
    assert host == "0.0.0.0" and port > 0
    server.settimeout(0.1)
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()
    with pytest.raises(OSError):
        server.accept()
    with pytest.raises(ConnectionRefusedError):
        a.connect(("10.0.0.2", port), timeout=5)


def test_udp_both_ways_and_port_unreachable(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    server = b.udp(local_addr=("0.0.0.0", 5353))
    server.settimeout(5)
    client = a.udp(remote_addr=("10.0.0.2", 5353))
    client.settimeout(5)
    assert client.getpeername() == ("10.0.0.2", 5353)
    client.send(b"question")
    data, addr = server.recvfrom()
    assert data == b"question" and addr == client.getsockname()
    server.sendto(b"answer", addr)
    assert client.recv() == b"answer"
    assert server.sendto(b"x" * 3000, addr) == 3000  # fragmented
    assert client.recv(100) == b"x" * 100  # cut to bufsize, like a socket
    with pytest.raises(ValueError):
        client.sendto(b"x", ("10.0.0.2", 1))  # a connected endpoint only talks to its peer
    lonely = a.udp(remote_addr=("10.0.0.2", 5999))
    lonely.settimeout(5)
    lonely.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):
        lonely.recv()
    lonely.close()
    server.close()
    with pytest.raises(OSError):
        server.recvfrom()


def test_ping(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, _ = two
    results = a.ping("10.0.0.2", count=2, interval=0.05)
    assert [r.ok for r in results] == [True, True]
    assert all(r.rtt is not None and r.rtt < 1.0 for r in results)
    (lost,) = a.ping("10.0.0.77", timeout=0.2)
    assert not lost.ok


def test_state_read_on_the_loop_thread(two: tuple[BlockingStack, BlockingStack]) -> None:
    a, b = two
    server = b.listen(7004)
    conn = a.connect(("10.0.0.2", 7004), timeout=5)
    server.accept()
    states = a.run_sync(lambda: [c["state"] for c in a.stack.report()["connections"]])
    assert states == ["ESTABLISHED"]
    conn.close()


def test_close_stops_everything_and_usage_errors() -> None:
    la, lb = MemoryLink.pair(("ca", "cb"))
    a = BlockingStack(la, "10.0.0.1/24", plugins=PLUGINS)
    with pytest.raises(RuntimeError, match="start"):
        a.connect(("10.0.0.2", 1))
    a.start()
    b = BlockingStack(lb, "10.0.0.2/24", plugins=PLUGINS).start()
    server = b.listen(7005)
    conn = a.connect(("10.0.0.2", 7005), timeout=5)
    server.accept()
    threads = {t.name for t in threading.enumerate()}
    assert "layers-layers" in threads
    a.close()
    b.close()
    a.close()  # idempotent
    with pytest.raises(OSError):
        conn.recv(1)
    with pytest.raises(RuntimeError):
        a.start()
    with pytest.raises(ConfigurationError, match="not an IPv4 address"):
        with stack(MemoryLink("x"), "10.0.0.1/24", plugins=PLUGINS) as s:
            s.connect(("example.org", 80))
    with pytest.raises(ConfigurationError, match="link options"):
        stack(MemoryLink("y"), "10.0.0.1/24", plugins=PLUGINS, mtu=1400)


def test_faults_option_over_memory() -> None:
    la, lb = MemoryLink.pair(("fa", "fb"))
    with stack(la, "10.0.0.1/24", plugins=PLUGINS, faults="loss=3%,reorder=3%,seed=5") as a, \
            stack(lb, "10.0.0.2/24", plugins=PLUGINS) as b:
        server = b.listen(7006)
        conn = a.connect(("10.0.0.2", 7006), timeout=10)
        conn.settimeout(30)
        peer, _ = server.accept()
        peer.settimeout(30)
        data = random.Random(9).randbytes(512 << 10)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        got = peer.recv_all()
        assert got == data
        faults = a.stack.interfaces[0].link.describe()["faults"]
        assert isinstance(faults, dict)
        assert faults["counts"].get("tx_loss", 0) > 0

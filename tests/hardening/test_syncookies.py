"""SYN cookies: a flood of spoofed SYNs fills the SYN queue, yet every legitimate client
connects (and carries data with the options its cookie kept), as with Linux's tcp_syncookies.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from layers_tcp.syncookies import MSS_TABLE, SynCookies, decode_ts, encode_ts

from layers.errors import ConfigurationError
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import PROTO_TCP, build_ipv4_header
from layers.wire.addr import ip4
from layers.wire.tcp import TCP_SYN, TCPHeader, TCPOptions

B = ip4("10.0.0.2")
BACKLOG = 16


class Peer:
    def __init__(self) -> None:
        self.transport: Any = None
        self.got = bytearray()
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += data

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def spoofed_syn(b: Stack, rng: random.Random) -> bytes:
    src = ip4("198.18.0.0") + rng.randrange(1 << 17)
    seg = TCPHeader(rng.randrange(1024, 65536), 80, rng.getrandbits(32), 0, TCP_SYN, 64240,
                    options=TCPOptions(mss=1460, wscale=7, sack_permitted=True,
                                       timestamp=(rng.getrandbits(32), 0))).to_bytes(
        src=src, dst=B)
    ip = build_ipv4_header(src, B, PROTO_TCP, len(seg))
    mac = b.interfaces[0].mac
    assert mac is not None
    return mac + bytes.fromhex("02deadbeef01") + struct.pack("!H", 0x0800) + ip + seg


def flood(cookies: int, *, legit: int = 20, rate: float = 5000.0,
          seconds: float = 2.0) -> tuple[Stack, Stack, list[Peer], list[Peer]]:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "tcp"],
                    settings={"tcp.secret": "77" * 16, "tcp.syncookies": cookies})
    b.add_route("default", gateway="10.0.0.1")  # SYN-ACKs to spoofed sources go there
    servers: list[Peer] = []

    def accept() -> Peer:
        servers.append(Peer())
        return servers[-1]

    b.protocol("tcp").listen(accept, 0, 80, backlog=BACKLOG)
    net.run_for(0.5)
    rng = random.Random(3)
    clients: list[Peer] = []
    frames = int(rate * seconds)
    every = frames // legit
    for i in range(frames):
        b.receive(b.interfaces[0], spoofed_syn(b, rng))
        if i % every == every // 2:
            client = Peer()
            clients.append(client)
            a.protocol("tcp").connect(client, B, 80)
        net.run_for(1 / rate)
    net.run_for(5.0)
    return a, b, clients, servers


def test_legitimate_clients_connect_through_a_syn_flood() -> None:
    _, b, clients, servers = flood(1)
    c = b.counters["tcp"]
    assert c["SyncookiesSent"] > 9000  # the flood, answered statelessly
    assert c["SyncookiesRecv"] >= 1 and not c["SyncookiesFailed"]
    assert all(cl.transport is not None and not cl.lost for cl in clients), \
        sum(cl.transport is not None for cl in clients)
    assert len(servers) == len(clients) == 20
    assert len(b.protocol("tcp").listeners[(0, 80)].syn_queue) <= BACKLOG


def test_without_cookies_the_flood_shuts_clients_out() -> None:
    _, b, clients, _ = flood(0)
    assert not b.counters["tcp"]["SyncookiesSent"]
    assert b.counters["tcp"].drops["listen_overflow"] > 9000
    assert sum(cl.transport is not None for cl in clients) < len(clients) // 2


def test_a_cookie_connection_keeps_its_options_and_carries_data() -> None:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "tcp"],
                    settings={"tcp.secret": "78" * 16, "tcp.syncookies": 2})
    servers: list[Peer] = []

    def accept() -> Peer:
        servers.append(Peer())
        return servers[-1]

    b.protocol("tcp").listen(accept, 0, 80)
    client = Peer()
    conn = a.protocol("tcp").connect(client, B, 80)
    assert net.run_until_true(lambda: bool(servers) and servers[0].transport is not None, 5)
    assert b.counters["tcp"]["SyncookiesSent"] == 1 == b.counters["tcp"]["SyncookiesRecv"]
    [server] = b.protocol("tcp").conns.values()
    assert server.ts_ok and server.sack_ok and server.snd_wscale == conn.rcv_wscale
    assert server.mss == conn.mss  # 1460 - 12 on this path: in the MSS table
    payload = bytes(range(256)) * 1000
    conn.write(payload)
    servers[0].transport.write(payload[::-1])
    assert net.run_until_true(lambda: len(servers[0].got) == len(payload)
                              and len(client.got) == len(payload), 30)
    assert bytes(servers[0].got) == payload and bytes(client.got) == payload[::-1]


def test_forged_and_stale_cookies_are_refused() -> None:
    jar = SynCookies(b"k" * 16)
    src, dst = ip4("192.0.2.1"), ip4("10.0.0.2")
    cookie, mss = jar.make(100.0, src, dst, 5555, 80, 12345, 1400)
    assert mss == 1300 and mss in MSS_TABLE
    assert jar.check(150.0, src, dst, 5555, 80, 12345, cookie) == 1300
    assert jar.check(100.0 + 3 * 60, src, dst, 5555, 80, 12345, cookie) is None  # too old
    assert jar.check(100.0, src, dst, 5556, 80, 12345, cookie) is None  # another port
    assert jar.check(100.0, src, dst, 5555, 80, 22345, cookie) is None  # another client ISN
    # a blind attacker guessing ACK numbers: 4 MSS values x 3 minutes in 2**32
    rng = random.Random(5)
    forged = sum(jar.check(100.0, src, dst, 5555, 80, 12345, rng.getrandbits(32)) is not None
                 for _ in range(5000))
    assert forged == 0


def test_timestamp_bits_round_trip() -> None:
    for ws in (None, 0, 7, 14):
        for sack in (False, True):
            ts = encode_ts(1_000_000, ws, sack)
            assert ts <= 1_000_000 and decode_ts(ts) == (ws, sack)


def test_the_setting_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="tcp_syncookies"):
        Stack(["ipv4", "tcp"], settings={"tcp.syncookies": 3})


def test_data_right_after_a_cookie_handshake_is_taken_at_once() -> None:
    """The client's first data segment, sent with (or right after) the ACK that returns the
    cookie, lies in the window our cookie SYN-ACK advertised: it was dropped as beyond a
    zero window (the connection knew of no window it had offered) and came back only with
    the client's retransmission, 200 ms later (found by the SYN flood over a TAP)."""
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "tcp"],
                    settings={"tcp.secret": "79" * 16, "tcp.syncookies": 2})
    servers: list[Peer] = []

    def accept() -> Peer:
        servers.append(Peer())
        return servers[-1]

    b.protocol("tcp").listen(accept, 0, 80)
    client = Peer()
    a.protocol("tcp").connect(client, B, 80)
    assert net.run_until_true(lambda: client.transport is not None, 5)
    client.transport.write(b"first words")
    t0 = net.clock.time
    assert net.run_until_true(lambda: bool(servers) and bytes(servers[0].got) == b"first words",
                              5)
    assert net.clock.time - t0 < 0.05  # one trip, not a retransmission timeout
    assert b.counters["tcp"]["SyncookiesRecv"] == 1
    assert not b.counters["tcp"].drops.get("zero_window")
    assert not a.counters["tcp"]["RetransSegs"]


def test_cookies_stay_valid_after_256_minutes() -> None:
    """The cookie keeps the minute's low 8 bits only; on a host up for more than 256 minutes
    (the clock is monotonic: uptime) every cookie was refused until check hashed with the
    whole minute again."""
    jar = SynCookies(b"k" * 16)
    src, dst = ip4("192.0.2.1"), ip4("10.0.0.2")
    for start in (300 * 60.0 + 5, 1000 * 60.0 + 59):
        cookie, mss = jar.make(start, src, dst, 5555, 80, 777, 1460)
        assert jar.check(start + 1, src, dst, 5555, 80, 777, cookie) == mss
        assert jar.check(start + 61, src, dst, 5555, 80, 777, cookie) == mss
        assert jar.check(start + 3 * 60, src, dst, 5555, 80, 777, cookie) is None

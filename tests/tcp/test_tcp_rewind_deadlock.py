"""Regression: a TCP bug found by the fault transfers, reduced to a deterministic test.

Both ends have data in flight and every ACK is lost until both retransmission timers fire.
The timeout rewinds SND.NXT to SND.UNA (go-back-N), and the engine then sends its pure ACKs
with SEQ = SND.NXT: a sequence number below what the peer has already received (RCV.NXT), so
the peer finds them unacceptable (RFC 9293 3.10.7.4: a zero-length segment needs
RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND) and drops them, ACK field and all; its retransmissions
are old data and are dropped the same way. With both ends rewound neither can ever accept the
other's acknowledgment: RTO backoff to the maximum, then ETIMEDOUT, on a link that is fine
again. BSD sends pure ACKs with SND.MAX for this reason ("for ACK only packets we want the
sequence number of the next unsent octet"); Linux never rewinds snd_nxt.

Fixed by sending pure ACKs with SND.MAX. Seen in
tests/transport/test_fault_transfers.py::test_echo_through_every_fault_in_real_time about one
run in twelve (both stacks in FIN_WAIT_1/ESTABLISHED, cwnd 1 MSS, RTO backed off to 51.2 s, each
side's RCV.NXT beyond the other's SND.NXT).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from layers.links.base import Link, LinkWrapper, Medium, TxOffload
from layers.virtual import VirtualNetwork
from layers.wire import ip4


class AckEater(LinkWrapper):
    """While ``active``: drops every segment without payload and every retransmission (a
    data segment whose sequence number was sent before), so data arrives once and no
    acknowledgment ever does. Works on an IP-medium link (frames are IPv4 packets)."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.active = False
        self.seen: set[int] = set()
        self.eaten = 0

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        data = bytes(frame)
        if self.active and len(data) >= 40 and data[9] == 6:
            ihl = (data[0] & 15) * 4
            total = struct.unpack_from("!H", data, 2)[0]
            seq = struct.unpack_from("!I", data, ihl + 4)[0]
            payload = total - ihl - (data[ihl + 12] >> 4) * 4
            if payload == 0 or seq in self.seen:
                self.eaten += 1
                return
            self.seen.add(seq)
        self.inner.send(frame, offload)


class Peer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.lost: Exception | bool | None = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


def keep(servers: list[Peer]) -> Callable[[], Peer]:
    """A protocol factory for ``listen`` that keeps every ``Peer`` it makes in ``servers``."""
    def factory() -> Peer:
        servers.append(Peer())
        return servers[-1]
    return factory


def test_acks_after_a_go_back_n_timeout_on_both_sides_are_accepted() -> None:
    net = VirtualNetwork()
    settings = {"tcp.secret": "ab" * 16}
    a = net.new_stack(["ipv4", "tcp"], settings=settings, name="a")
    b = net.new_stack(["ipv4", "tcp"], settings=settings, name="b")
    eaters: list[AckEater] = []

    def wrap(link: Link) -> Link:
        eaters.append(AckEater(link))
        return eaters[-1]

    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.001,
             medium=Medium.IP, wrap=wrap)
    a.start()
    b.start()
    servers: list[Peer] = []
    b.protocol("tcp").listen(keep(servers), 0, 7)
    client = Peer()
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 7)
    assert net.run_until_true(lambda: bool(servers) and servers[0].transport is not None)
    server = servers[0].transport

    # data both ways at once; all of it arrives, none of it is acknowledged
    for eater in eaters:
        eater.active = True
    conn.write(b"a" * 7240)  # five full segments: Nagle holds nothing back
    server.write(b"b" * 7240)
    net.run_for(2.0)  # several RTOs on both sides (RTO 200 ms, backing off)
    assert len(servers[0].data) == 7240 and len(client.data) == 7240
    assert a.counters["tcp"]["RTOs"] > 0 and b.counters["tcp"]["RTOs"] > 0
    for eater in eaters:
        eater.active = False  # the path is perfect from now on

    def all_acked() -> bool:
        return conn.snd_una == conn.snd_max and server.snd_una == server.snd_max

    recovered = net.run_until_true(all_acked, timeout=30.0)
    assert recovered, (
        f"a: una={conn.snd_una} nxt={conn.snd_nxt} max={conn.snd_max} rcv_nxt={conn.rcv_nxt}; "
        f"b: una={server.snd_una} nxt={server.snd_nxt} max={server.snd_max} "
        f"rcv_nxt={server.rcv_nxt}; drops a={dict(a.counters['tcp'].drops)} "
        f"b={dict(b.counters['tcp'].drops)}")


class DropFirstData(LinkWrapper):
    """Drops the first segment that carries payload; everything else passes."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.dropped = 0

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        data = bytes(frame)
        if not self.dropped and len(data) >= 40 and data[9] == 6:
            ihl = (data[0] & 15) * 4
            total = struct.unpack_from("!H", data, 2)[0]
            if total - ihl - (data[ihl + 12] >> 4) * 4 > 0:
                self.dropped += 1
                return
        self.inner.send(frame, offload)


def test_retransmission_carrying_never_sent_bytes_advances_snd_max() -> None:
    # 100 bytes go out and are lost; Nagle holds the next 500 behind them; the timeout's
    # go-back-N then sends all 600 from SND.UNA. Those 500 bytes are new: SND.MAX must cover
    # them, or the peer's ACK of 600 looks like an ACK of unsent data and is dropped forever
    # (found by the fault transfers: a seeded virtual-clock echo stalled at 447304 bytes).
    # Duplicate-ACK counting: RACK-TLP would repair this tail loss with a probe before the
    # timeout whose go-back-N is under test.
    net = VirtualNetwork()
    settings = {"tcp.secret": "ef" * 16, "tcp.recovery": "dupack"}
    a = net.new_stack(["ipv4", "tcp"], settings=settings, name="a")
    b = net.new_stack(["ipv4", "tcp"], settings=settings, name="b")
    droppers: list[DropFirstData] = []

    def wrap(link: Link) -> Link:
        droppers.append(DropFirstData(link))
        return droppers[-1]

    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.001,
             medium=Medium.IP, wrap=wrap)
    a.start()
    b.start()
    servers: list[Peer] = []
    b.protocol("tcp").listen(keep(servers), 0, 7)
    conn = a.protocol("tcp").connect(Peer(), ip4("10.0.0.2"), 7)
    assert net.run_until_true(lambda: bool(servers) and servers[0].transport is not None)
    conn.write(b"a" * 100)
    net.run_for(0.0005)  # the 100 bytes are on the wire (and will be lost)
    conn.write(b"b" * 500)  # held by Nagle: 100 bytes are unacknowledged
    assert conn.snd_max - conn.snd_una == 100
    assert net.run_until_true(lambda: len(servers[0].data) == 600, timeout=10.0)
    assert net.run_until_true(lambda: conn.snd_una == conn.snd_max, timeout=10.0), (
        f"una={conn.snd_una} nxt={conn.snd_nxt} max={conn.snd_max}; "
        f"drops={dict(a.counters['tcp'].drops)}")
    assert bytes(servers[0].data) == b"a" * 100 + b"b" * 500
    assert droppers[0].dropped == 1 and a.counters["tcp"]["RTOs"] >= 1
    assert a.counters["tcp"].drops.get("ack_unsent", 0) == 0

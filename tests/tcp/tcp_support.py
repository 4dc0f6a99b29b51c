"""Test support for the tcp plugin, smoltcp style: a stack (real ipv4 + tcp) on one end of an
IP-medium memory link on a virtual clock; the test owns the other end, feeds crafted segments
at chosen times and checks the segments that come out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs

from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork
from layers.wire import build_ipv4_header, ip4
from layers.wire.ipv4 import IPv4Header
from layers.wire.tcp import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TCPHeader,
    TCPOptions,
    flags_str,
)

US, PEER = "10.0.0.1", "10.0.0.9"
US_I, PEER_I = ip4(US), ip4(PEER)
PEER_PORT = 40000
SECRET = "00112233445566778899aabbccddeeff"

S, A, F, R, P = TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, TCP_PSH
SA = TCP_SYN | TCP_ACK
FA = TCP_FIN | TCP_ACK
PA = TCP_PSH | TCP_ACK
RA = TCP_RST | TCP_ACK

#: settings for tests that want bare segments: no timestamps, no window scaling
PLAIN = {"tcp.timestamps": False, "tcp.window_scaling": False, "tcp.sack": False}


class Recorder(asyncio.Protocol):
    """An asyncio.Protocol that records every call."""

    def __init__(self, *, echo: bool = False, keep_open: bool = True) -> None:
        self.echo = echo
        self.keep_open = keep_open
        self.transport: Any = None
        self.events: list[tuple[str, Any]] = []
        self.data = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append(("made", None))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.events.append(("eof", None))
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def pause_writing(self) -> None:
        self.events.append(("pause_writing", None))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing", None))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    @property
    def lost(self) -> Exception | str | None:
        for k, v in self.events:
            if k == "lost":
                return v
        return "not lost"


@attrs.frozen
class Seg:
    """A segment the stack sent, decoded by our own parser (checksum verified)."""

    ip: IPv4Header
    tcp: TCPHeader
    payload: bytes
    time: float

    @property
    def flags(self) -> int:
        return self.tcp.flags

    @property
    def seq(self) -> int:
        return self.tcp.seq

    @property
    def ack(self) -> int:
        return self.tcp.ack

    @property
    def wnd(self) -> int:
        return self.tcp.window

    @property
    def opts(self) -> TCPOptions:
        return self.tcp.options

    def __repr__(self) -> str:
        return (f"<Seg t={self.time:.3f} [{flags_str(self.flags)}] seq={self.seq} "
                f"ack={self.ack} win={self.wnd} len={len(self.payload)} {self.opts}>")


class Wire:
    """One stack at 10.0.0.1 on an IP-medium link; the test plays 10.0.0.9."""

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        *,
        mtu: int = 1500,
        plugins: list[Any] | None = None,
    ) -> None:
        self.clock = VirtualClock(1000.0)
        merged = {"tcp.secret": SECRET, **(settings or {})}
        self.stack = Stack(plugins or ["ipv4", "tcp"], clock=self.clock, settings=merged)
        self.link, self.far = MemoryLink.pair(("tcp0", "far0"), medium=Medium.IP, mtu=mtu)
        self.far.attach(self.clock)
        self.iface = self.stack.add_interface(self.link, address=f"{US}/24")
        self.stack.start()
        self.tcp: Any = self.stack.protocol("tcp")
        self.ip_ident = 0

    # --- time ---------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.clock.time

    def run_until(self, when: float) -> None:
        """Run every timer due up to ``when``, each at its own time."""
        stack = self.stack
        while True:
            d = stack.next_deadline()
            if d is None or d > when:
                break
            self.clock.advance_to(d)
            stack.poll()
        self.clock.advance_to(when)

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def settle(self) -> None:
        """Run what is due now (call_soon work)."""
        self.run_until(self.now)

    # --- input --------------------------------------------------------------------------
    def inject(
        self,
        flags: int,
        seq: int,
        ack: int = 0,
        payload: bytes = b"",
        *,
        wnd: int = 65535,
        opts: TCPOptions | None = None,
        sport: int = PEER_PORT,
        dport: int = 80,
        src: str = PEER,
        dst: str = US,
        checksum: int | None = None,
        urgent: int = 0,
        tos: int = 0,
    ) -> None:
        hdr = TCPHeader(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, wnd,
                        checksum, urgent, opts or TCPOptions())
        self.inject_raw(hdr.to_bytes(payload, src=ip4(src), dst=ip4(dst)), src=src, dst=dst,
                        tos=tos)

    def inject_raw(self, segment: bytes, *, src: str = PEER, dst: str = US,
                   flags: int = 0, tos: int = 0) -> None:
        """``tos``: the IP header's ToS byte (its low two bits are the ECN field)."""
        self.ip_ident += 1
        ip = build_ipv4_header(ip4(src), ip4(dst), 6, len(segment), ident=self.ip_ident,
                               tos=tos)
        self.stack.receive(self.iface, bytes(ip) + segment, flags)
        self.settle()

    # --- output -------------------------------------------------------------------------
    def sent(self) -> list[Seg]:
        """Every segment the stack sent since the last call."""
        out = []
        inbox = self.far._inbox  # (time sent, frame): the link has no latency
        while inbox:
            when = inbox[0][0]
            frame = self.far.recv()[0]  # type: ignore[index]
            ip = IPv4Header.from_bytes(frame)
            body = frame[ip.header_length : ip.total_length]
            tcp = TCPHeader.from_bytes(body, src=ip.src, dst=ip.dst)
            out.append(Seg(ip, tcp, bytes(body[tcp.header_length :]), when))
        return out

    def raw_sent(self) -> list[bytes]:
        out = []
        while (got := self.far.recv()) is not None:
            out.append(got[0])
        return out

    def one(self) -> Seg:
        segs = self.sent()
        assert len(segs) == 1, segs
        return segs[0]

    def nothing(self) -> None:
        segs = self.sent()
        assert segs == [], segs

    @property
    def counters(self) -> Any:
        return self.stack.counters["tcp"]

    # --- connections --------------------------------------------------------------------
    def listen(self, port: int = 80, *, backlog: int = 16, accepting: bool = True,
               **options: Any) -> tuple[Any, list[Recorder]]:
        protos: list[Recorder] = []

        def factory() -> Recorder:
            p = Recorder()
            protos.append(p)
            return p

        listener = self.tcp.listen(factory, 0, port, backlog=backlog, accepting=accepting,
                                   **options)
        return listener, protos

    def accept(
        self,
        *,
        port: int = 80,
        iss: int = 1000,
        syn_opts: TCPOptions | None = None,
        wnd: int = 65535,
        sport: int = PEER_PORT,
        rtt: float = 0.0,
        **options: Any,
    ) -> tuple[Any, Recorder, Seg]:
        """Passive open: SYN in, SYN-ACK out, ACK in (``rtt`` seconds later: the stack's first
        RTT sample). Returns (connection, protocol, SYN-ACK)."""
        if (0, port) not in self.tcp.listeners:
            self.listen(port, **options)
        self.inject(S, iss, opts=syn_opts, wnd=wnd, sport=sport, dport=port)
        synack = self.one()
        assert synack.flags == SA, synack
        if rtt:
            self.advance(rtt)
        ts = None
        if synack.opts.timestamp is not None and syn_opts is not None and syn_opts.timestamp:
            ts = (syn_opts.timestamp[0] + 1, synack.opts.timestamp[0])
        self.inject(A, iss + 1, synack.seq + 1, wnd=wnd, sport=sport, dport=port,
                    opts=TCPOptions(timestamp=ts) if ts else None)
        conn = self.tcp.conns[(US_I, port, PEER_I, sport)].app  # the TCPTransport
        assert conn is not None
        proto = conn.get_protocol()
        return conn, proto, synack

    def connect(
        self, *, port: int = 80, iss: int = 5000, synack_opts: TCPOptions | None = None,
        wnd: int = 65535, **options: Any,
    ) -> tuple[Any, Recorder, Seg]:
        """Active open: SYN out, SYN-ACK in, ACK out. Returns (connection, protocol, SYN)."""
        proto = Recorder()
        results: list[BaseException | None] = []
        conn = self.tcp.connect(proto, PEER_I, port, on_connected=results.append, **options)
        syn = self.one()
        assert syn.flags == S
        self.inject(SA, iss, syn.seq + 1, wnd=wnd, sport=port, dport=syn.tcp.sport,
                    opts=synack_opts)
        ack = self.one()
        assert ack.flags == A and ack.ack == iss + 1, ack
        assert results == [None]
        return conn, proto, syn


def virtual_bulk(payload: bytes, *, checksum_offload: bool = False) -> tuple[float, int]:
    """Two stacks (ipv4 + tcp) in this process on a VirtualNetwork, an IP-medium link 0.5 ms
    long, one connection, ``payload`` written by one and read by the other: (wall seconds from
    the write to the last byte received, data segments received meanwhile). Both stacks share
    one CPU, so this is the engine's own cost (the benches' ``virtual pair`` and ``sim_rate``).
    ``checksum_offload``: the link lets both stacks skip TCP checksums, as a veth pair does."""
    net = VirtualNetwork()
    a = net.new_stack(["ipv4", "tcp"])
    b = net.new_stack(["ipv4", "tcp"])
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), medium=Medium.IP,
             latency=0.0005, checksum_offload=checksum_offload)
    a.start()
    b.start()
    got = [0]

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got[0] += len(data)

    b.protocol("tcp").listen(Sink, 0, 9)
    conn = a.protocol("tcp").connect(Sink(), ip4("10.0.0.2"), 9)
    net.run_for(0.01)
    segments = b.counters["tcp"]["InSegs"]
    t0 = time.perf_counter()
    conn.write(payload)
    net.run_until_true(lambda: got[0] >= len(payload), timeout=3600)
    seconds = time.perf_counter() - t0
    return seconds, b.counters["tcp"]["InSegs"] - segments

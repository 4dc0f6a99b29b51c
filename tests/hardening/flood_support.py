"""Floods of one kind of frame at a victim stack on a virtual clock, with memory figures.

The victim (arp, ipv4, icmp, udp, tcp) sits on an Ethernet memory link at 10.0.0.2/16 with a
default route through 10.0.0.1 (a static ARP entry: the attacker's end). The attacker's end is
a bare :class:`~layers.links.memory.MemoryLink` whose frames are read and thrown away, so
nothing but the victim holds memory. Each flood kind builds frame ``i`` of a flood; the runner
feeds them at a fixed rate of virtual time and samples the victim's memory: traced Python
memory (tracemalloc), the timer heap's entries against its live timers, and RSS.
"""

from __future__ import annotations

import asyncio
import gc
import random
import struct
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import attrs

from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.wire import (
    ARPOP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ICMP_ECHO,
    IP_MF,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    ZERO_MAC,
    build_arp,
    build_icmp,
    build_ipv4_header,
    ip4,
)
from layers.wire.tcp import TCP_ACK, TCP_SYN, TCPHeader, TCPOptions

VICTIM, GATEWAY = ip4("10.0.0.2"), ip4("10.0.0.1")
PORT = 80
ATTACKER_MAC = bytes.fromhex("02aabbccdd01")
#: spoofed sources: 198.18.0.0/15 (RFC 2544's benchmarking range), routed via the gateway
SPOOF_BASE = ip4("198.18.0.0")
KINDS = ("fragments", "syn", "ooo", "arp", "icmp")
NO_OPTIONS = TCPOptions()


class _Sink(asyncio.Protocol):
    """Accepts connections and ignores what arrives."""


class Victim:
    def __init__(self, settings: dict[str, Any] | None = None, *, ooo_conns: int = 0) -> None:
        self.clock = VirtualClock()
        self.stack = Stack(["arp", "ipv4", "icmp", "udp", "tcp"], clock=self.clock,
                           settings={"tcp.secret": "00" * 16, **(settings or {})},
                           name="victim")
        self.mine, theirs = MemoryLink.pair(("attacker", "victim0"))
        self.mine.mac = ATTACKER_MAC
        self.mine.queue_limit = 1 << 30  # drained after every frame: never the bound
        self.mine.attach(self.clock)
        self.iface = self.stack.add_interface(theirs, address="10.0.0.2/16")
        self.stack.add_route("default", gateway="10.0.0.1")
        self.stack.start()
        arp = self.stack.protocol("arp")
        arp.resolvers[self.iface].add_static(GATEWAY, ATTACKER_MAC)
        self.tcp = self.stack.protocol("tcp")
        self.tcp.listen(_Sink, 0, PORT, backlog=128)
        assert self.iface.mac is not None
        self.mac: bytes = self.iface.mac
        self.sent = 0
        #: (source address, source port, next sequence number, acknowledgement number) of
        #: the established connections
        self.conns: list[tuple[int, int, int, int]] = []
        for k in range(ooo_conns):
            self._handshake(SPOOF_BASE + 0x10000 + k, 20000 + k)

    # --- frames ------------------------------------------------------------------------
    def eth(self, ethertype: int, payload: bytes | bytearray, dst: bytes | None = None,
            src: bytes = ATTACKER_MAC) -> bytes:
        return (dst or self.mac) + src + struct.pack("!H", ethertype) + bytes(payload)

    def ip(self, src: int, proto: int, payload: bytes | bytearray, *, ident: int = 0,
           frag: int = 0) -> bytes:
        head = build_ipv4_header(src, VICTIM, proto, len(payload), ident=ident, flags_frag=frag)
        return self.eth(ETH_P_IP, head + payload)

    def tcp_segment(self, src: int, sport: int, seq: int, ack: int, flags: int,
                    payload: bytes = b"", options: TCPOptions = NO_OPTIONS,
                    window: int = 65535) -> bytes:
        seg = TCPHeader(sport, PORT, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, window,
                        options=options).to_bytes(payload, src=src, dst=VICTIM)
        return self.ip(src, PROTO_TCP, seg)

    def _handshake(self, src: int, sport: int) -> None:
        iss = 1000
        syn = TCPOptions(mss=1460, wscale=7)
        self.stack.receive(self.iface, self.tcp_segment(src, sport, iss, 0, TCP_SYN,
                                                        options=syn))
        self.stack.poll()
        synack = None
        while (got := self.mine.recv()) is not None:
            frame = got[0]
            if frame[12:14] == b"\x08\x00" and frame[23] == PROTO_TCP:
                synack = TCPHeader.from_bytes(frame[34:])
        assert synack is not None and synack.flags & TCP_SYN, "no SYN-ACK to the handshake"
        self.feed(self.tcp_segment(src, sport, iss + 1, synack.seq + 1, TCP_ACK))
        self.conns.append((src, sport, iss + 1, synack.seq + 1))

    # --- running ------------------------------------------------------------------------
    def feed(self, frame: bytes) -> None:
        self.stack.receive(self.iface, frame)
        self.stack.poll()
        while self.mine.recv() is not None:
            self.sent += 1

    def advance(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.time + seconds)
        self.stack.poll()
        while self.mine.recv() is not None:
            self.sent += 1


def flood_frame(kind: str, victim: Victim, i: int, rng: random.Random) -> bytes:
    """Frame ``i`` of a flood of ``kind``: each from a distinct source (or ID) where that
    is what costs the victim state."""
    if kind == "fragments":  # first fragments with distinct IDs (and sources every 64k)
        src = SPOOF_BASE + (i >> 16)
        return victim.ip(src, PROTO_UDP, bytes(8) + rng.randbytes(1000), ident=i & 0xFFFF,
                         frag=IP_MF)
    if kind == "syn":
        src = SPOOF_BASE + (i % 0x1FFFF)
        return victim.tcp_segment(src, 1024 + (i * 7919) % 60000, rng.getrandbits(32), 0,
                                  TCP_SYN, options=TCPOptions(mss=1460))
    if kind == "ooo":  # data beyond a hole, all over the window, on every connection
        src, sport, nxt, ack = victim.conns[i % len(victim.conns)]
        offset = 1 + rng.randrange(0, 900_000 // 1000) * 1000
        return victim.tcp_segment(src, sport, nxt + offset, ack, TCP_ACK, rng.randbytes(500),
                                  window=512)
    if kind == "arp":  # who-has 10.0.0.2, from a new on-link sender every time
        sender = ip4("10.0.128.0") + (i % 30000)
        smac = bytes([0x02, 0x55]) + struct.pack("!I", i)
        return victim.eth(ETH_P_ARP, build_arp(ARPOP_REQUEST, smac, sender, ZERO_MAC, VICTIM),
                          BROADCAST_MAC, smac)
    if kind == "icmp":
        src = SPOOF_BASE + (i % 0x1FFFF)
        return victim.ip(src, PROTO_ICMP, build_icmp(ICMP_ECHO, 0, i & 0xFFFFFFFF,
                                                      rng.randbytes(56)))
    raise ValueError(f"unknown flood kind {kind!r}; known: {', '.join(KINDS)}")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@attrs.define
class Sample:
    frames: int
    traced_mb: float
    heap_entries: int
    live_timers: int
    rss_mb: float


@attrs.define
class FloodResult:
    kind: str
    #: the first sample is taken when tracing starts (after the warm-up frames)
    samples: list[Sample]
    victim: Victim
    seconds: float = 0.0


def run_flood(kind: str, frames: int, *, rate: float = 10_000.0, warmup: float = 1 / 3,
              samples: int = 2, settings: dict[str, Any] | None = None,
              on_sample: Callable[[Sample], None] | None = None) -> FloodResult:
    """Feed ``frames`` frames of ``kind`` at ``rate`` frames per virtual second. tracemalloc
    starts after the first ``warmup`` share of them (once the victim's tables are full: a
    flat victim then only replaces what it holds), and memory is sampled then and after each
    of ``samples`` equal parts of the rest. Memory that grows from one sample to the next is
    memory the flood pins."""
    victim = Victim(settings, ooo_conns=16 if kind == "ooo" else 0)
    rng = random.Random(7)
    dt = 1.0 / rate
    out: list[Sample] = []
    was_tracing = tracemalloc.is_tracing()

    def sample(done: int) -> None:
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        s = Sample(done, traced / 1e6, victim.stack.timers.entries, len(victim.stack.timers),
                   rss_mb())
        out.append(s)
        if on_sample is not None:
            on_sample(s)

    first = int(frames * warmup)
    part = max(1, (frames - first) // samples)
    t0 = time.perf_counter()
    try:
        for i in range(frames):
            if i == first:
                if not was_tracing:
                    tracemalloc.start()
                tracemalloc.clear_traces()
                sample(i)
            victim.feed(flood_frame(kind, victim, i, rng))
            victim.advance(dt)
            if i >= first and (i + 1 - first) % part == 0:
                sample(i + 1)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return FloodResult(kind, out, victim, time.perf_counter() - t0)

"""The receive path's own cost per TCP segment, without a device or a peer: crafted in-order
segments (with a timestamp option, as Linux sends them) are fed to a stack on the virtual
clock the way the asyncio runner feeds TAP frames (a view after a 10-byte virtio header),
with or without the link's checksum verification. Prints; asserts nothing about speed.

    .venv/bin/python tests/tcp/bench_tcp_rx_cost.py [SIZE] [--verified] [--telemetry] [-n N]
    .venv/bin/python tests/tcp/bench_tcp_rx_cost.py --acks [--burst K] [--telemetry] [-n N]
    .venv/bin/python tests/tcp/bench_tcp_rx_cost.py --plain [--burst K] [-n N]

``--acks`` measures the other direction: the stack sends a bulk transfer and the crafted
segments are pure ACKs, each acknowledging one more segment, so every one goes through the
congestion control, the delivery-rate sample and (with ``--telemetry``) a telemetry sample,
and releases new segments (their sending is part of the cost). ``--burst K`` polls the stack
after every K ACKs instead of after each, as the asyncio runner does after each burst it reads:
the output the ACKs release leaves once per burst.

``--plain`` is the send side as the bench's ``tcp_tx`` over a TAP without offloads has it (what
``--acks`` only approximates: an IP link, one segment per ACK, a clock that stands still): an
Ethernet link (a permanent ARP entry for the peer), no checksum offload and no TSO (one MSS
frame per segment, checksummed in software), and a peer that acknowledges every second
segment as Linux's receiver does, echoes the timestamps and offers a window of 64 segments,
while the clock moves 10 us per ACK. Once the window is full every ACK releases two new
segments, so the figure per segment is the cost of sending one and half that of taking an
ACK in. It prints the segments sent: per segment = the difference of "I refs" of two runs
divided by the difference of their segments sent.

Wall time is noisy on a shared host. For a deterministic figure count instructions: run it
under ``valgrind --tool=cachegrind --cache-sim=no`` with two values of ``-n`` and divide the
difference of the "I refs" totals by the difference of ``-n`` (frames are built before the
timed loop but inside the process, so keep the same SIZE and compare trees, not sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time

from layers.links.base import RX_CSUM_VERIFIED, Medium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.wire import ip4
from layers.wire.checksum import checksum, pseudo_header_sum

US, PEER = ip4("10.0.0.1"), ip4("10.0.0.9")
_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIHHHH")


def _packet(seq: int, ack: int, flags: int, payload: bytes = b"", opts: bytes = b"",
            wnd: int = 65535) -> bytes:
    hlen = 20 + len(opts)
    t = bytearray(_TCP.pack(40000, 80, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (hlen << 10) | flags,
                            wnd, 0, 0) + opts + payload)
    c = checksum(t, pseudo_header_sum(PEER, US, 6, len(t)))
    t[16:18] = c.to_bytes(2, "big")
    h = bytearray(_IP.pack(0x45, 0, 20 + len(t), 1, 0x4000, 64, 6, 0, PEER, US))
    h[10:12] = checksum(h).to_bytes(2, "big")
    return bytes(h) + bytes(t)


def _ts(tsval: int, tsecr: int = 0) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", type=int, nargs="?", default=1448)
    parser.add_argument("--verified", action="store_true",
                        help="frames carry RX_CSUM_VERIFIED (a TAP with offloads)")
    parser.add_argument("--telemetry", action="store_true",
                        help="a stack-wide telemetry subscriber listens (layers.telemetry)")
    parser.add_argument("--acks", action="store_true",
                        help="the send side: crafted ACKs for a bulk transfer the stack sends")
    parser.add_argument("--plain", action="store_true",
                        help="the send side over Ethernet without offloads, ACKs every second "
                             "segment (see the docstring)")
    parser.add_argument("-n", type=int, default=0, help="segments (default: about 64 MiB)")
    parser.add_argument("--burst", type=int, default=1,
                        help="--acks: ACKs received between two polls (default 1)")
    args = parser.parse_args()
    if args.plain:
        plain(args)
        return
    if args.acks:
        acks(args)
        return
    size = args.size
    n = args.n or max(200, (64 << 20) // size)

    clock = VirtualClock(1000.0)
    stack = Stack(["ipv4", "tcp"], clock=clock)
    ours, theirs = MemoryLink.pair(medium=Medium.IP)
    iface = stack.add_interface(ours, address="10.0.0.1/24")
    theirs.attach(clock)
    stack.start()
    samples = [0]
    if args.telemetry:
        def observe(sample: object) -> None:
            samples[0] += 1

        stack.telemetry.subscribe(observe)
    got = [0]

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got[0] += len(data)

    stack.protocol("tcp").listen(Sink, 0, 80)
    syn_opts = (struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02\x08\x0a" + struct.pack("!II", 1, 0)
                + b"\x01\x03\x03\x07")
    stack.receive(iface, _packet(1000, 0, 0x02, opts=syn_opts), 0)
    stack.poll()
    synack = theirs.recv()
    assert synack is not None
    iss = struct.unpack_from("!I", synack[0], 24)[0]
    stack.receive(iface, _packet(1001, iss + 1, 0x10, opts=_ts(2), wnd=1000), 0)
    stack.poll()
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    frames = [b"\0" * 10 + _packet(1001 + i * size, iss + 1, 0x18, payload, _ts(3 + i), 1000)
              for i in range(n)]
    flags = RX_CSUM_VERIFIED if args.verified else 0
    receive = stack.receive
    # the first two segments get the whole (scaled) window advertised
    for f in frames[:2]:
        receive(iface, memoryview(f)[10:], flags)
    stack.poll()
    while theirs.recv() is not None:
        pass
    every = max(1, min(64, (256 << 10) // size))  # a runner's batch: poll sends the ACKs
    t0 = time.process_time()
    for i in range(2, n):
        receive(iface, memoryview(frames[i])[10:], flags)
        if i % every == 0:
            stack.poll()
            while theirs.recv() is not None:
                pass
    stack.poll()
    dt = time.process_time() - t0
    if got[0] != n * size:
        raise SystemExit(f"only {got[0]} of {n * size} bytes arrived: {stack.report()}")
    print(f"receive {size}-byte segments, checksum "
          f"{'verified by the link' if args.verified else 'checked in software'}: "
          f"{dt / (n - 2) * 1e9:.0f} ns CPU per segment ({n} segments"
          + (f", {samples[0]} telemetry samples)" if args.telemetry else ")"))


def acks(args: argparse.Namespace) -> None:
    """The ACK path of a sender: each crafted ACK acknowledges one more full segment."""
    n = args.n or 20000
    mss = 1448
    clock = VirtualClock(1000.0)
    stack = Stack(["ipv4", "tcp"], clock=clock,
                  settings={"tcp.sndbuf": (n + 64) * mss, "tcp.secret": "ab" * 16})
    ours, theirs = MemoryLink.pair(medium=Medium.IP)
    iface = stack.add_interface(ours, address="10.0.0.1/24")
    theirs.attach(clock)
    stack.start()
    samples = [0]
    if args.telemetry:
        def observe(sample: object) -> None:
            samples[0] += 1

        stack.telemetry.subscribe(observe)

    class Source(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.write(bytes((n + 32) * mss))  # type: ignore[attr-defined]

    stack.protocol("tcp").listen(Source, 0, 80)
    syn_opts = (struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02\x08\x0a" + struct.pack("!II", 1, 0)
                + b"\x01\x03\x03\x07")
    stack.receive(iface, _packet(1000, 0, 0x02, opts=syn_opts), 0)
    stack.poll()
    synack = theirs.recv()
    assert synack is not None
    iss = struct.unpack_from("!I", synack[0], 24)[0]
    stack.receive(iface, _packet(1001, iss + 1, 0x10, opts=_ts(2), wnd=0xFFFF), 0)
    stack.poll()
    frames = [b"\0" * 10 + _packet(1001, iss + 1 + (i + 1) * mss, 0x10, b"", _ts(3 + i), 0xFFFF)
              for i in range(n)]
    receive = stack.receive
    sent = 0
    while theirs.recv() is not None:
        sent += 1
    t0 = time.process_time()
    burst = max(1, args.burst)
    for i in range(n):
        receive(iface, memoryview(frames[i])[10:], 0)
        if (i + 1) % burst and i + 1 < n:
            continue
        stack.poll()
        while theirs.recv() is not None:
            sent += 1
    dt = time.process_time() - t0
    conn = next(iter(stack.protocol("tcp").conns.values()))
    if conn.snd_una != iss + 1 + n * mss:
        raise SystemExit(f"the ACKs were not all taken: {conn.describe()}")
    print(f"send side: {dt / n * 1e9:.0f} ns CPU per ACK ({n} ACKs, {sent} segments sent, "
          f"cwnd {conn.cc.cwnd // mss} segments"
          + (f", {samples[0]} telemetry samples)" if args.telemetry else ")"))


#: the --plain peer's window, in segments (it limits what is in flight)
PLAIN_WINDOW = 64
US_MAC, PEER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000009")


def plain(args: argparse.Namespace) -> None:
    """The plain TAP's send side: each crafted ACK acknowledges two more full segments."""
    n = args.n or 20000
    mss = 1448
    step = 10e-6  # seconds of the virtual clock per ACK
    total = (2 * n + PLAIN_WINDOW + 32) * mss
    clock = VirtualClock(1000.0)
    stack = Stack(["arp", "ipv4", "tcp"], clock=clock,
                  settings={"tcp.sndbuf": total, "tcp.secret": "ab" * 16})
    ours = MemoryLink("mem0", medium=Medium.ETHERNET, mac=US_MAC, queue_limit=1 << 20)
    theirs = MemoryLink("mem1", medium=Medium.ETHERNET, mac=PEER_MAC, queue_limit=1 << 20)
    ours.peer, theirs.peer = theirs, ours
    iface = stack.add_interface(ours, address="10.0.0.1/24")
    theirs.attach(clock)
    stack.start()
    stack.protocol("arp").resolvers[iface].add_static(PEER, PEER_MAC)
    eth = US_MAC + PEER_MAC + b"\x08\x00"

    class Source(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.write(bytes(total))  # type: ignore[attr-defined]

    stack.protocol("tcp").listen(Source, 0, 80)
    syn_opts = (struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02\x08\x0a" + struct.pack("!II", 1, 0)
                + b"\x01\x03\x03\x07")
    stack.receive(iface, eth + _packet(1000, 0, 0x02, opts=syn_opts), 0)
    stack.poll()
    synack = theirs.recv()
    while synack is not None and synack[0][12:14] != b"\x08\x00":  # ARP's announcements
        synack = theirs.recv()
    assert synack is not None
    iss, = struct.unpack_from("!I", synack[0], 14 + 24)
    opts = synack[0][14 + 40:]
    tsval0, = struct.unpack_from("!I", opts, opts.index(b"\x08\x0a") + 2)
    wnd = PLAIN_WINDOW * mss >> 7
    stack.receive(iface, eth + _packet(1001, iss + 1, 0x10, opts=_ts(2, tsval0), wnd=wnd), 0)
    stack.poll()

    def when(i: int) -> float:
        return 1000.0 + (i + 1) * step

    def echo(i: int) -> int:
        # the TSval of the segments this ACK covers: sent about a window (32 ACKs) earlier
        return (tsval0 + int(when(i - PLAIN_WINDOW // 2) * 1000) - 1000 * 1000) & 0xFFFFFFFF

    frames = [eth + _packet(1001, iss + 1 + 2 * (i + 1) * mss, 0x10, b"", _ts(3 + i, echo(i)),
                            wnd) for i in range(n)]
    receive = stack.receive
    sent = 0
    while theirs.recv() is not None:
        sent += 1
    t0 = time.process_time()
    burst = max(1, args.burst)
    for i in range(n):
        clock.advance_to(when(i))
        receive(iface, frames[i], 0)
        if (i + 1) % burst and i + 1 < n:
            continue
        stack.poll()
        while theirs.recv() is not None:
            sent += 1
    dt = time.process_time() - t0
    conn = next(iter(stack.protocol("tcp").conns.values()))
    if conn.snd_una != iss + 1 + 2 * n * mss or conn.snd_nxt != conn.snd_una + PLAIN_WINDOW * mss:
        raise SystemExit(f"the ACKs were not all taken: {conn.describe()}")
    print(f"plain send side: {dt / sent * 1e9:.0f} ns CPU per segment sent ({n} ACKs, "
          f"{sent} segments sent)")


if __name__ == "__main__":
    main()

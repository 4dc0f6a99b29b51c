"""The stack's own cost per accepted and closed connection, without a device or a peer: the
frames a Linux client sends for ``connect; shutdown(SHUT_WR); wait for the FIN; close``
(SYN with MSS, SACK-permitted, timestamps and window scale; the handshake's ACK; FIN+ACK;
the ACK of our FIN) are crafted and fed to one stack on the virtual clock serving
``layers up --serve discard``'s protocol through ``layers.streams.create_server``, the way
the asyncio runner feeds TAP frames (a view after a 10-byte virtio header). The stack
answers with a SYN-ACK and a FIN+ACK, which are read and thrown away. The clock moves 50 us
per connection and due timers run as a runner would run them. Prints; asserts nothing about
speed.

    .venv/bin/python tests/tcp/bench_tcp_conn_cost.py [-n N] [--profile]

Wall time is noisy on a shared host. For a deterministic figure count instructions: run it
under ``valgrind --tool=cachegrind --cache-sim=no`` with two values of ``-n`` (both at most
4000: the frames of 4000 connections are built whatever ``-n`` is) and divide the difference
of the "I refs" totals by the difference of ``-n``::

    for n in 2000 4000; do valgrind --tool=cachegrind --cache-sim=no \\
        --cachegrind-out-file=/dev/null .venv/bin/python tests/tcp/bench_tcp_conn_cost.py -n $n \\
        2>&1 | grep 'I *refs'; done
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time

from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.services import Discard
from layers.stack import Stack
from layers.streams import create_server
from layers.timers import VirtualClock
from layers.wire import ip4
from layers.wire.checksum import checksum, pseudo_header_sum

US, PEER = ip4("10.0.0.1"), ip4("10.0.0.9")
PORT = 9
_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIHHHH")
SYN, FIN, ACK = 0x02, 0x01, 0x10
#: seconds of virtual time between connections
GAP = 50e-6
#: connections whose frames are always built (a larger -n builds more)
BUILT = 4000


def _packet(sport: int, seq: int, ack: int, flags: int, opts: bytes = b"",
            wnd: int = 64240) -> bytes:
    hlen = 20 + len(opts)
    t = bytearray(_TCP.pack(sport, PORT, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                            (hlen << 10) | flags, wnd, 0, 0) + opts)
    c = checksum(t, pseudo_header_sum(PEER, US, 6, len(t)))
    t[16:18] = c.to_bytes(2, "big")
    h = bytearray(_IP.pack(0x45, 0, 20 + len(t), 1, 0x4000, 64, 6, 0, PEER, US))
    h[10:12] = checksum(h).to_bytes(2, "big")
    return b"\0" * 10 + bytes(h) + bytes(t)


def _ts(tsval: int, tsecr: int) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def _syn_opts(tsval: int) -> bytes:
    # Linux's order: MSS, SACK-permitted, timestamps, NOP, window scale 7
    return (struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02\x08\x0a"
            + struct.pack("!II", tsval, 0) + b"\x01\x03\x03\x07")


async def run(n: int, profile: bool) -> None:
    clock = VirtualClock(1000.0)
    stack = Stack(["ipv4", "tcp"], clock=clock)
    ours, theirs = MemoryLink.pair(medium=Medium.IP)
    iface = stack.add_interface(ours, address="10.0.0.1/24")
    theirs.attach(clock)
    stack.start()
    server = await create_server(stack, Discard, "0.0.0.0", PORT, backlog=4096)
    tcp = stack.protocol("tcp")
    receive = stack.receive

    # every frame is built beforehand: the ISN and timestamp our stack will choose for each
    # connection are known (keyed hashes of the 4-tuple and the virtual time it arrives at)
    frames: list[tuple[memoryview, ...]] = []
    isns: list[int] = []
    whens: list[float] = []
    # always as many (while n <= BUILT), so that two runs with different n built as much
    for i in range(50 + max(n, BUILT)):
        sport = 20000 + i % 45000
        isn = 1_000_000 + i * 7919
        ts = 5000 + i * 3
        when = clock.time + (i + 1) * GAP
        saved, clock.time = clock.time, when
        key = (US, PORT, PEER, sport)
        iss = tcp.isn(key)
        tsval = (int(when * 1000) + tcp.ts_offset(key)) & 0xFFFFFFFF
        clock.time = saved
        ack = iss + 1
        isns.append(iss)
        whens.append(when)
        frames.append(tuple(memoryview(f)[10:] for f in (
            _packet(sport, isn, 0, SYN, _syn_opts(ts)),
            _packet(sport, isn + 1, ack, ACK, _ts(ts + 1, tsval)),
            _packet(sport, isn + 1, ack, FIN | ACK, _ts(ts + 1, tsval)),
            _packet(sport, isn + 2, ack + 1, ACK, _ts(ts + 2, tsval)))))

    def one(i: int) -> None:
        syn, ack, fin, last = frames[i]
        clock.advance_to(whens[i])
        stack.poll()
        receive(iface, syn, 0)
        synack = theirs.recv()
        if synack is None or struct.unpack_from("!I", synack[0], 24)[0] != isns[i]:
            raise SystemExit(f"not the SYN-ACK expected for connection {i}: {stack.report()}")
        receive(iface, ack, 0)
        receive(iface, fin, 0)
        if theirs.recv() is None:
            raise SystemExit(f"no FIN for connection {i}: {stack.report()}")
        receive(iface, last, 0)
        while theirs.recv() is not None:
            pass

    # warm up: the first connections fill caches and the interpreter's free lists
    for i in range(50):
        one(i)
    pr = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if pr is not None:
        pr.enable()
    for i in range(50, 50 + n):
        one(i)
    if pr is not None:
        pr.disable()
    dt = time.process_time() - t0
    left = len(tcp.conns)
    accepted = tcp.c["Accepted"]
    if left or accepted != 50 + n:
        raise SystemExit(f"{left} connections left, {accepted} accepted: {stack.report()}")
    print(f"accept and close: {dt / n * 1e6:.1f} us CPU per connection ({n} connections, "
          f"{len(stack.timers)} timers live, {stack.timers.entries} queued)")
    server.close()
    if pr is not None:
        pstats.Stats(pr).sort_stats("tottime").print_stats(200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="connections (default 5000)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top costs")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.profile))


if __name__ == "__main__":
    main()

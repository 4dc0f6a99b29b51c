"""Memory a TIME-WAIT connection holds: N connections that our side closes first (a server
whose protocol closes the transport as soon as it is made) are driven into TIME-WAIT on the
virtual clock with crafted frames a Linux client would send (SYN with MSS, SACK-permitted,
timestamps and window scale; the handshake's ACK; its FIN+ACK acknowledging our FIN). With
``tracemalloc``, the Python memory held while all N sit in TIME-WAIT is compared with the
memory once their 2*MSL has passed and they are gone: the difference divided by N is the
bytes one TIME-WAIT connection keeps (its objects, its table entry and its timer). Prints;
asserts nothing about size (the tests check the behaviour).

    .venv/bin/python tests/tcp/bench_tcp_time_wait_mem.py [-n N] [--top K]

``--top K`` lists the K source lines whose allocations the TIME-WAIT connections hold most.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc

from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.wire import build_ipv4_header, ip4
from layers.wire.ipv4 import IPv4Header
from layers.wire.tcp import TCP_ACK, TCP_FIN, TCP_SYN, TCPHeader, TCPOptions

US, PEER = ip4("10.0.0.1"), ip4("10.0.0.9")
PORT = 80
#: seconds of virtual time between connections
GAP = 50e-6


class CloseAtOnce(asyncio.Protocol):
    """Closes first: the stack's FIN leaves as soon as the connection is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def run(n: int, top: int) -> None:
    clock = VirtualClock(1000.0)
    stack = Stack(["ipv4", "tcp"], clock=clock, settings={"tcp.msl": 30.0})
    ours, theirs = MemoryLink.pair(medium=Medium.IP)
    iface = stack.add_interface(ours, address="10.0.0.1/24")
    theirs.attach(clock)
    stack.start()
    tcp = stack.protocol("tcp")
    tcp.listen(CloseAtOnce, 0, PORT, backlog=4096)

    def settle() -> None:
        while (d := stack.next_deadline()) is not None and d <= clock.time:
            stack.poll()

    def send(sport: int, seq: int, ack: int, flags: int, opts: TCPOptions) -> None:
        seg = TCPHeader(sport, PORT, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, 64240,
                        None, 0, opts).to_bytes(b"", src=PEER, dst=US)
        ip = build_ipv4_header(PEER, US, 6, len(seg))
        stack.receive(iface, bytes(ip) + seg, 0)
        settle()

    def received() -> TCPHeader:
        got = theirs.recv()
        assert got is not None, stack.report()
        frame = got[0]
        ip = IPv4Header.from_bytes(frame)
        return TCPHeader.from_bytes(frame[ip.header_length:ip.total_length], src=ip.dst,
                                    dst=ip.src)

    def one(i: int) -> None:
        clock.advance_to(clock.time + GAP)
        settle()
        sport = 20000 + i % 45000
        isn, ts = 1_000_000 + i * 7919, 5000 + i * 3
        send(sport, isn, 0, TCP_SYN, TCPOptions(mss=1460, sack_permitted=True,
                                                timestamp=(ts, 0), wscale=7))
        synack = received()
        tsval = synack.options.timestamp[0] if synack.options.timestamp else 0
        send(sport, isn + 1, synack.seq + 1, TCP_ACK, TCPOptions(timestamp=(ts + 1, tsval)))
        fin = received()
        assert fin.flags & TCP_FIN, fin
        send(sport, isn + 1, fin.seq + 1, TCP_FIN | TCP_ACK,
             TCPOptions(timestamp=(ts + 2, tsval)))
        while theirs.recv() is not None:
            pass

    for i in range(50):  # warm up: free lists, caches, the table's first growth
        one(i)
    clock.advance_to(clock.time + 61.0)
    settle()
    assert not tcp.conns
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(50, 50 + n):
        one(i)
    # a second on: the timers cancelled when TIME-WAIT began (retransmission, delayed ACK)
    # leave the timer queue when they come due; the TIME-WAIT timers are 59 s from expiry
    clock.advance_to(clock.time + 1.0)
    settle()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    snap = tracemalloc.take_snapshot() if top else None
    in_tw = sum(1 for c in tcp.conns.values() if c.state.name == "TIME_WAIT")
    if in_tw != n:
        raise SystemExit(f"{in_tw} of {n} connections in TIME-WAIT: {stack.report()}")
    clock.advance_to(clock.time + 61.0)
    settle()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    if snap is not None:
        for stat in snap.compare_to(tracemalloc.take_snapshot(), "lineno")[:top]:
            print(f"{stat.size_diff / n:8.0f} bytes per connection  {stat.traceback}")
    tracemalloc.stop()
    if tcp.conns:
        raise SystemExit(f"{len(tcp.conns)} connections left after 2*MSL")
    per = (held - after) / n
    print(f"TIME-WAIT: {per:.0f} bytes ({per / 1024:.2f} KiB) held per connection "
          f"({n} connections; {(held - before) / n:.0f} bytes each counting the table's "
          f"growth)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="connections (default 2000)")
    parser.add_argument("--top", type=int, default=0, metavar="K",
                        help="also list the K allocation sites holding the most")
    args = parser.parse_args()
    run(args.n, args.top)


if __name__ == "__main__":
    main()

"""The whole per-segment cost of a TCP receiver on a TAP-like descriptor, plain (no offloads).

A peer process opens a connection to an asyncio-streams sink (``start_server``, as the bench's
``tcp_rx`` runs it) and sends MSS-sized data segments with a timestamp option, as Linux does,
written into one end of a ``SOCK_SEQPACKET`` socket pair (one read, one frame, EAGAIN when
empty: what a TAP's descriptor does), in bursts of ``--burst`` segments, each burst after the
ACK of the previous one. The stack reads the other end through the real ``TapLink`` receive
and send code, on the real ``AsyncioRunner`` and asyncio loop, without a virtio header: so
each segment costs what it costs under ``tcp_rx`` on a plain TAP (the read, Ethernet, IPv4,
the software checksum, TCP, the stream reader, the ACKs), the loop's wake-ups per burst
included. No root.

    .venv/bin/python tests/bench/rx_cost.py [-n SEGMENTS] [--burst K] [--profile]

Prints the wall time per segment (noisy: the peer is another process). For a deterministic
figure count the stack process's instructions (the peer is not traced)::

    for n in 2000 6000; do valgrind --tool=cachegrind --cache-sim=no \\
        --cachegrind-out-file=/dev/null .venv/bin/python tests/bench/rx_cost.py -n $n \\
        2>&1 | grep 'I *refs'; done

and divide the difference of the two totals by 4000. ``--profile`` prints cProfile's view of
the stack process instead. It measures; it never asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time

from layers.links.base import LinkCapabilities, Medium
from layers.links.tuntap import TapLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.streams import start_server

STACK_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
STACK_IP, PEER_IP = "10.0.0.2", "10.0.0.1"
PORT = 5001

#: the peer: argv = fd, done fd, segments, burst, MSS
PEER = r"""
import os, struct, sys
fd, done, count, burst, mss = map(int, sys.argv[1:6])
stack_mac, peer_mac = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
def csum(b):
    s = int.from_bytes(b + b"\0" * (len(b) & 1), "big") % 0xFFFF
    return 0xFFFF - s if s else 0xFFFF
def frame(seq, ack, flags, opts=b"", data=b""):
    hlen = 20 + len(opts)
    t = bytearray(struct.pack("!HHIIHHHH", 40000, 5001, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                              (hlen << 10) | flags, 4096, 0, 0) + opts + data)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(t))
    t[16:18] = csum(pseudo + bytes(t)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(t), 1, 0x4000, 64, 6, 0,
                               src, dst))
    ip[10:12] = csum(bytes(ip)).to_bytes(2, "big")
    return stack_mac + peer_mac + b"\x08\x00" + bytes(ip) + bytes(t)
def ts(v):
    return b"\x01\x01\x08\x0a" + struct.pack("!II", v, 0)
def tcp_in():
    while True:
        r = os.read(fd, 65536)
        if r[12:14] == b"\x08\x00" and r[23] == 6:
            return struct.unpack_from("!IIH", r, 38)
seq = 1000
os.write(fd, frame(seq, 0, 0x02, struct.pack("!BBH", 2, 4, mss) + b"\x04\x02" + ts(1)[2:]
                   + b"\x01\x03\x03\x07"))
iss = tcp_in()[0]
seq += 1
os.write(fd, frame(seq, iss + 1, 0x10, ts(2)))
data = (bytes(range(256)) * (mss // 256 + 1))[:mss]
frames = [frame(seq + i * mss, iss + 1, 0x18, ts(3 + i), data) for i in range(count)]
end = seq + count * mss
for i in range(0, count, burst):
    for f in frames[i:i + burst]:
        os.write(fd, f)
    want = seq + min(i + burst, count) * mss
    while True:
        got = tcp_in()[1]
        if (got - want) & 0xFFFFFFFF < 0x80000000:
            break
os.write(fd, frame(end, iss + 1, 0x11, ts(3 + count)))
while not tcp_in()[2] & 1:  # the sink's FIN, after it read everything
    pass
os.write(done, b"x")
"""


class SocketTap(TapLink):
    """A ``TapLink`` on one end of a socket pair instead of ``/dev/net/tun``: the same
    receive and send code, without a device (or root); plain (no virtio header)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.name = "rx0"
        self.vnet_hdr = False
        self._hlen = 0
        self.mac = STACK_MAC
        self.capabilities = LinkCapabilities(medium=Medium.ETHERNET, mtu=1500)

    def close(self) -> None:
        self._teardown()


async def run(count: int, burst: int, mss: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    done_r, done_w = os.pipe()
    stack = Stack(["arp", "ipv4", "tcp"], clock=loop.time)
    link = SocketTap(os.dup(ours.fileno()))
    ours.close()
    stack.add_interface(link, address=f"{STACK_IP}/24")
    stack.protocol("arp").resolvers[stack.interfaces[0]].add_static(PEER_IP, PEER_MAC)
    runner = AsyncioRunner(stack, loop)
    runner.start()
    got = [0]

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 20):
            got[0] += len(data)
        writer.close()

    server = await start_server(stack, sink, "0.0.0.0", PORT)
    finished = loop.create_future()
    loop.add_reader(done_r, finished.set_result, None)
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, str(theirs.fileno()), str(done_w), str(count),
         str(burst), str(mss)], pass_fds=(theirs.fileno(), done_w))
    theirs.close()
    os.close(done_w)
    t0 = time.perf_counter()
    try:
        await finished
        dt = time.perf_counter() - t0
    finally:
        loop.remove_reader(done_r)
        os.close(done_r)
        server.close()
        runner.stop()
        if peer.wait() != 0:
            raise SystemExit("the peer failed")
    return dt, got[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4000, help="data segments")
    parser.add_argument("--burst", type=int, default=16,
                        help="segments the peer writes before it waits for their ACK")
    parser.add_argument("--mss", type=int, default=1448, help="bytes of data per segment")
    parser.add_argument("--profile", action="store_true", help="cProfile the stack process")
    args = parser.parse_args()
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    dt, got = asyncio.run(run(args.n, args.burst, args.mss))
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    if got != args.n * args.mss:
        raise SystemExit(f"the sink got {got} of {args.n * args.mss} bytes")
    print(f"{args.n} segments of {args.mss} bytes in bursts of {args.burst}: "
          f"{dt / args.n * 1e6:.1f} us per segment")


if __name__ == "__main__":
    main()

"""The whole per-echo cost of a stack on a TAP-like descriptor, as ``ping -i 0`` sees it.

A peer process writes an echo request (virtio header + Ethernet + IPv4 + ICMP) into one end of
a ``SOCK_SEQPACKET`` socket pair (one read, one frame, EAGAIN when empty: what a TAP's
descriptor does), waits for the reply, and sends the next; the stack reads the other end
through the real ``TapLink`` receive and send code, on the real ``AsyncioRunner`` and asyncio
loop. So every request costs what it costs under ``layers up``: the loop's wake-up, the
runner's read handler, Ethernet, IPv4, ICMP, the way back out and the ``writev``. No root.

    .venv/bin/python tests/bench/echo_cost.py [-n N] [--size BYTES] [--no-offload] [--profile]

Prints the wall time per echo (noisy: the peer is another process). For a deterministic
figure count the stack process's instructions (the peer is not traced)::

    for n in 500 1500; do valgrind --tool=cachegrind --cache-sim=no \\
        --cachegrind-out-file=/dev/null .venv/bin/python tests/bench/echo_cost.py -n $n \\
        --gap 0.002 2>&1 | grep 'I *refs'; done

and divide the difference of the two totals by 1000. ``--gap`` makes every request wake the
loop, as a ping does when the stack is faster than the round trip; without it a slowed-down
(traced) stack finds the next request waiting after each reply and never sleeps.
``--profile`` prints cProfile's view of the stack process instead. It measures; it never
asserts a timing.
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
from layers.links.tuntap import VNET_HDR_LEN, TapLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack

STACK_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
STACK_IP, PEER_IP = "10.0.0.2", "10.0.0.1"

#: the peer: argv = fd, done fd, count, size, vnet header length, gap (seconds)
PEER = r"""
import os, struct, sys, time
fd, done, count, size, hlen = map(int, sys.argv[1:6])
gap = float(sys.argv[6])
stack_mac, peer_mac = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
def csum(b):
    s = int.from_bytes(b + b"\0" * (len(b) & 1), "big") % 0xFFFF
    return 0xFFFF - s if s else 0xFFFF
def frame(seq):
    data = bytes(range(256)) * (size // 256 + 1)
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq & 0xFFFF) + data[:size])
    icmp[2:4] = csum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq & 0xFFFF, 0x4000,
                              64, 1, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    ip[10:12] = csum(bytes(ip)).to_bytes(2, "big")
    return bytes(hlen) + stack_mac + peer_mac + b"\x08\x00" + bytes(ip) + bytes(icmp)
frames = [frame(i) for i in range(count)]
for i, f in enumerate(frames):
    if gap:
        time.sleep(gap)
    os.write(fd, f)
    r = os.read(fd, 65536)
    while r[hlen + 12:hlen + 14] != b"\x08\x00":  # the stack's gratuitous ARP
        r = os.read(fd, 65536)
    if r[hlen + 34] != 0 or r[hlen + 38:hlen + 42] != f[hlen + 38:hlen + 42]:
        sys.exit(f"echo {i}: bad reply {r[:64].hex()}")
os.write(done, b"x")
"""


class SocketTap(TapLink):
    """A ``TapLink`` on one end of a socket pair instead of ``/dev/net/tun``: the same
    receive and send code, without a device (or root)."""

    def __init__(self, fd: int, offload: bool) -> None:
        super().__init__()
        self._fd = fd
        self.name = "echo0"
        self.vnet_hdr = offload
        self._hlen = VNET_HDR_LEN if offload else 0
        self.mac = STACK_MAC
        self.capabilities = LinkCapabilities(
            medium=Medium.ETHERNET, mtu=1500, rx_checksum=offload, tx_checksum=offload,
            gso_max_size=65535 if offload else 0)

    def close(self) -> None:
        self._teardown()


async def run(count: int, size: int, offload: bool, gap: float) -> float:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    done_r, done_w = os.pipe()
    stack = Stack(["arp", "ipv4", "icmp"], clock=loop.time)
    link = SocketTap(os.dup(ours.fileno()), offload)
    ours.close()
    stack.add_interface(link, address=f"{STACK_IP}/24")
    stack.protocol("arp").resolvers[stack.interfaces[0]].add_static(PEER_IP, PEER_MAC)
    runner = AsyncioRunner(stack, loop)
    runner.start()
    finished = loop.create_future()
    loop.add_reader(done_r, finished.set_result, None)
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, str(theirs.fileno()), str(done_w), str(count), str(size),
         str(VNET_HDR_LEN if offload else 0), str(gap)], pass_fds=(theirs.fileno(), done_w))
    theirs.close()
    os.close(done_w)
    t0 = time.perf_counter()
    try:
        await finished
        dt = time.perf_counter() - t0
    finally:
        loop.remove_reader(done_r)
        os.close(done_r)
        runner.stop()
        if peer.wait() != 0:
            raise SystemExit("the peer failed")
    replies = stack.counter("icmp")["out_echo_reps"]
    if replies != count:
        raise SystemExit(f"{replies} replies to {count} requests: {stack.report()}")
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="echo requests")
    parser.add_argument("--size", type=int, default=56, help="ICMP data bytes (ping -s)")
    parser.add_argument("--no-offload", action="store_true",
                        help="no virtio header (a TAP opened with offload=False)")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds the peer waits between a reply and the next request "
                             "(so that every request wakes the loop: use 0.002 under valgrind)")
    parser.add_argument("--profile", action="store_true", help="cProfile the stack process")
    args = parser.parse_args()
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    dt = asyncio.run(run(args.n, args.size, not args.no_offload, args.gap))
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    print(f"{args.n} echoes of {args.size} bytes: {dt / args.n * 1e6:.1f} us per round trip")


if __name__ == "__main__":
    main()

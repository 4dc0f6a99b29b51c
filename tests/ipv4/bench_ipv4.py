"""Per-packet cost of the ipv4 receive and send paths (a measurement, never an assertion).

Run: .venv/bin/python tests/ipv4/bench_ipv4.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ipv4_support import TEST_PROTO, Harness, ip_header

from layers.wire.addr import ip4


class _Sink:
    name = "sink"
    protocol = TEST_PROTO

    def receive(self, d: object) -> None:
        pass

    def error(self, e: object) -> None:
        pass


def per_call(fn: object, n: int) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    h = Harness()
    ip = h.b.protocol("ipv4")
    h.b.transports[TEST_PROTO] = _Sink()
    pkt = memoryview(ip_header("10.0.0.1", "10.0.0.2", 1460) + bytes(1460))
    iface = h.ib
    n = 100_000
    rx = per_call(lambda: ip.receive(iface, pkt, 0), n)
    print(f"receive 1480-byte packet, delivered: {rx:.2f} us/packet")

    a = h.a
    cap = h.cap_a
    a.interfaces[0].link = type("Null", (), {"send": lambda self, f, o=None: None})()
    send = a.ip.send  # type: ignore[union-attr]
    dst = ip4("10.0.0.2")
    payload = bytes(1460)
    tx = per_call(lambda: send(dst, TEST_PROTO, payload), n)
    print(f"send 1460-byte payload (IP link, null device): {tx:.2f} us/packet")
    big = bytes(64000)
    frag = per_call(lambda: send(dst, TEST_PROTO, big), 2000)
    print(f"send 64000 bytes as 44 fragments: {frag:.1f} us/datagram")

    cap.sent.clear()
    a.interfaces[0].link = cap
    send(dst, TEST_PROTO, big)
    pieces = [memoryview(f) for f, _ in cap.sent]
    ip_b = h.b.protocol("ipv4")

    def reasm() -> None:
        for p in pieces:
            ip_b.receive(iface, p, 0)

    r = per_call(reasm, 500)
    print(f"reassemble 44 fragments into 64000 bytes: {r:.1f} us/datagram")


if __name__ == "__main__":
    main()

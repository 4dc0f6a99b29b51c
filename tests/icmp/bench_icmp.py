"""Per-packet cost of the icmp plugin's paths (a measurement, never an assertion).

Run: .venv/bin/python tests/icmp/bench_icmp.py

* ``echo in->out``: one echo request frame into ``Stack.receive`` on an IP-medium memory link
  (ipv4 + icmp) until the reply frame is on the link, per size;
* ``icmp.receive``: the same, entered at the icmp transport (ipv4's receive not counted, its
  send is);
* ``error out``: ``stack.errors.destination_unreachable`` for a UDP datagram, limits disabled;
* ``ping rtt (virtual)``: EchoService.echo to a second stack and back over VirtualNetwork,
  wall time per round trip.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from icmp_support import Wire, datagram, icmp_of
from layers_icmp import Icmp

from layers.links.base import Medium
from layers.protocols import IPDatagram
from layers.virtual import VirtualNetwork
from layers.wire import PROTO_UDP, build_icmp, build_ipv4_header, ip4

US, PEER = ip4("10.0.0.1"), ip4("10.0.0.2")


def per_call(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def echo_frame(size: int) -> bytes:
    msg = build_icmp(8, 0, (1 << 16) | 1, bytes(size))
    return bytes(build_ipv4_header(PEER, US, 1, len(msg))) + bytes(msg)


def main() -> None:
    w = Wire(["ipv4", "icmp"])
    inbox = w.peer._inbox
    icmp: Icmp = icmp_of(w)
    for size in (56, 1400):
        frame = echo_frame(size)

        def through_stack(frame: bytes = frame) -> None:
            w.stack.receive(w.iface, frame, 0)
            inbox.clear()

        dg = datagram(w, frame)

        def at_icmp(dg: IPDatagram = dg) -> None:
            icmp.receive(dg)
            inbox.clear()

        print(f"echo in->out  {size:5d} B   {per_call(through_stack, 20000):6.2f} us")
        print(f"icmp.receive  {size:5d} B   {per_call(at_icmp, 20000):6.2f} us")

    w2 = Wire(["ipv4", "icmp"], settings={"icmp.ratelimit": 0, "icmp.msgs_per_sec": 0})
    udp = bytes(build_ipv4_header(PEER, US, PROTO_UDP, 8 + 100)) + bytes(108)
    dg = datagram(w2, udp)
    inbox2 = w2.peer._inbox

    def error_out() -> None:
        w2.stack.errors.destination_unreachable(dg, 3)
        inbox2.clear()

    print(f"error out     (port unreachable) {per_call(error_out, 20000):6.2f} us")

    net = VirtualNetwork()
    a = net.new_stack(["ipv4", "icmp"])
    b = net.new_stack(["ipv4", "icmp"])
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), medium=Medium.IP)
    a.start()
    b.start()
    echo = icmp_of(a).echo
    done: list[object] = []
    seq = [0]

    def round_trip() -> None:
        seq[0] = (seq[0] + 1) & 0xFFFF
        echo(PEER, ident=1, seq=seq[0], payload=bytes(56), callback=done.append)
        while not done:
            net.step()
        done.clear()

    print(f"ping rtt (virtual, wall time)  {per_call(round_trip, 5000):6.2f} us")


if __name__ == "__main__":
    main()

"""The in-memory link pair on a VirtualNetwork: latency, queue limit, MTU."""

from __future__ import annotations

from links_support import ProbePlugin, probe, probe_pair, send_probe

from layers.links import Medium, MemoryLink
from layers.virtual import VirtualNetwork


def test_latency_delays_every_frame_by_exactly_the_link_latency() -> None:
    net = VirtualNetwork()
    _a, b, ia, ib = probe_pair(net, latency=0.005)
    net.run_until(1.0)
    for i in range(3):
        send_probe(ia, ib, b"x%d" % i)
    net.run_until(1.004)
    assert probe(b).got == []  # not yet: 4 ms of 5 ms
    net.run_until_idle()
    assert [(t, p) for t, p, _ in probe(b).got] == [(1.005, b"x0"), (1.005, b"x1"), (1.005, b"x2")]


def test_echo_round_trip_takes_two_latencies() -> None:
    net = VirtualNetwork()
    a, b, ia, ib = probe_pair(net, echo=True, latency=0.002)
    send_probe(ia, ib, b"ping")
    net.run_until_idle()
    assert probe(a).got == [(0.004, b"re:ping", 0)]
    assert probe(b).got == [(0.002, b"ping", 0)]


def test_queue_limit_drops_and_counts_overflow() -> None:
    net = VirtualNetwork()
    a = net.new_stack([ProbePlugin()])
    b = net.new_stack([ProbePlugin()])
    la, lb = MemoryLink.pair(latency=0.001)
    lb.queue_limit = 3
    ia = a.add_interface(la)
    ib = b.add_interface(lb)
    a.start()
    b.start()
    for i in range(5):
        send_probe(ia, ib, bytes([i]))
    assert la.stats.tx_frames == 3
    assert la.stats.tx_dropped == 2
    net.run_until_idle()
    assert probe(b).payloads == [b"\x00", b"\x01", b"\x02"]
    # the queue drained: room again
    send_probe(ia, ib, b"later")
    net.run_until_idle()
    assert probe(b).payloads[-1] == b"later"


def test_frames_larger_than_the_mtu_are_dropped_at_send() -> None:
    net = VirtualNetwork()
    _a, b, ia, ib = probe_pair(net, mtu=600)
    send_probe(ia, ib, bytes(600))  # 614-byte frame: fits
    send_probe(ia, ib, bytes(601))  # one byte too many
    net.run_until_idle()
    assert [len(p) for p in probe(b).payloads] == [600]
    assert ia.link.stats.tx_dropped == 1
    assert ia.capabilities.mtu == 600


def test_ip_medium_pair_has_no_mac_and_carries_bare_packets() -> None:
    a, b = MemoryLink.pair(medium=Medium.IP, mtu=576)
    assert a.mac is None and b.mac is None
    a.send(b"\x45" + bytes(575))
    a.send(b"\x45" + bytes(576))  # over the MTU: no link header to add on an IP link
    got = b.recv()
    assert got is not None and len(got[0]) == 576
    assert b.recv() is None
    assert a.stats.tx_dropped == 1


def test_deliver_due_hands_over_exactly_what_recv_would_in_order() -> None:
    from layers.timers import VirtualClock

    clock = VirtualClock()
    a, b = MemoryLink.pair(latency=0.001, medium=Medium.IP)
    a.attach(clock)
    b.attach(clock)
    a.send(b"one")
    clock.advance_to(0.0005)
    a.send(b"two")
    got: list[tuple[object, bytes, int]] = []
    assert not b.deliver_due(0.0009, lambda i, f, fl: got.append((i, f, fl)), "if")
    clock.advance_to(0.001)
    assert b.deliver_due(0.001, lambda i, f, fl: got.append((i, f, fl)), "if")
    assert got == [("if", b"one", 0)]
    assert (b.stats.rx_frames, b.stats.rx_bytes) == (1, 3)
    assert b.next_deadline() == 0.0015

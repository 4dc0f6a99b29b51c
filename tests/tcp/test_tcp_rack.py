"""RACK-TLP (RFC 8985) at segment level on the virtual clock, against duplicate-ACK counting
(``tcp.recovery=dupack``): a tail loss repaired by a probe without a timeout, reordering
deeper than three segments taken for reordering rather than loss once RACK has seen it, and
the probe's own accounting (LossProbes, LossProbeRecovery)."""

from __future__ import annotations

from typing import Any

from tcp_support import A, Seg, Wire

from layers.wire.tcp import TCPOptions

MSS = 1000
RTT = 0.05


def est(recovery: str = "rack") -> tuple[Wire, Any, Any, int]:
    """A SACK connection whose handshake took RTT; returns (wire, transport, tcb, us)."""
    w = Wire({"tcp.window_scaling": False, "tcp.timestamps": False, "tcp.sack": True,
              "tcp.recovery": recovery})
    conn, _proto, synack = w.accept(
        iss=1000, syn_opts=TCPOptions(mss=MSS, sack_permitted=True), rtt=RTT)
    return w, conn, conn.get_extra_info("tcp"), synack.seq + 1


def flight(w: Wire, conn: Any, n: int) -> list[Seg]:
    conn.write(b"".join(bytes([65 + i % 26]) * MSS for i in range(n)))
    return w.sent()


def sack(us: int, *spans: tuple[int, int]) -> TCPOptions:
    return TCPOptions(sack=tuple((us + a * MSS, us + b * MSS) for a, b in spans))


def data(segs: list[Seg]) -> list[Seg]:
    return [s for s in segs if s.payload]


def test_tail_loss_of_two_segments_is_repaired_by_a_probe_without_timeout() -> None:
    w, conn, tcb, us = est()
    flight(w, conn, 10)
    t0 = w.now
    w.advance(RTT)
    w.inject(A, 1001, us + 8 * MSS)  # segments 8 and 9, the tail, were lost
    w.sent()
    # the probe timeout, 2 SRTT (+ 2 ms) after that ACK, resends the last segment
    w.advance(0.11)
    (probe,) = data(w.sent())
    assert probe.seq == us + 9 * MSS
    assert round(probe.time - t0, 3) == round(2 * RTT + RTT + 0.002, 3)
    assert w.counters["LossProbes"] == 1 and w.counters["RTOs"] == 0
    # its SACK tells RACK that segment 8, sent before it, is lost: retransmitted at once
    w.advance(RTT)
    w.inject(A, 1001, us + 8 * MSS, opts=sack(us, (9, 10)))
    (rtx,) = data(w.sent())
    assert rtx.seq == us + 8 * MSS and tcb.recovery.in_recovery
    w.advance(RTT)
    w.inject(A, 1001, us + 10 * MSS)
    assert not tcb.recovery.in_recovery
    w.advance(1.0)
    assert w.counters["RTOs"] == 0 and w.counters["RetransSegs"] == 2


def test_the_same_tail_loss_waits_for_the_timeout_without_rack() -> None:
    w, conn, _tcb, us = est("dupack")
    flight(w, conn, 10)
    w.advance(RTT)
    w.inject(A, 1001, us + 8 * MSS)
    w.advance(0.3)
    assert [s.seq for s in data(w.sent())] == [us + 8 * MSS]
    assert w.counters["RTOs"] == 1 and w.counters["LossProbes"] == 0


def test_a_probe_that_repaired_a_loss_reduces_the_window_once_acknowledged_beyond() -> None:
    w, conn, tcb, us = est()
    flight(w, conn, 10)
    w.advance(RTT)
    w.inject(A, 1001, us + 9 * MSS)  # only the last segment lost
    w.sent()
    # one segment in flight: the PTO allows for a delayed ACK (rto_min) but no later than
    # the RTO, which the probe then replaces
    w.advance(0.25)
    (probe,) = data(w.sent())
    assert probe.seq == us + 9 * MSS and w.counters["RTOs"] == 0
    w.advance(RTT)
    w.inject(A, 1001, us + 10 * MSS)
    cwnd = tcb.cc.cwnd
    assert w.counters["LossProbeRecovery"] == 0  # an ACK of exactly the probe: not yet
    flight(w, conn, 2)
    w.advance(RTT)
    w.inject(A, 1001, us + 12 * MSS)
    assert w.counters["LossProbeRecovery"] == 1
    assert tcb.cc.cwnd < cwnd and w.counters["RTOs"] == 0


def reorder_once_then_deep(recovery: str) -> tuple[Wire, Any]:
    """Segment 1 arrives one place late, then segment 3 four places late, 5 ms after the
    segments it was overtaken by: reordering, never loss."""
    w, conn, tcb, us = est(recovery)
    flight(w, conn, 10)
    w.advance(RTT)
    w.inject(A, 1001, us + MSS)
    w.inject(A, 1001, us + MSS, opts=sack(us, (2, 3)))
    w.inject(A, 1001, us + 3 * MSS)  # segment 1, late
    for k in range(5, 9):
        w.inject(A, 1001, us + 3 * MSS, opts=sack(us, (4, k)))
    w.advance(0.005)
    w.inject(A, 1001, us + 10 * MSS)  # segment 3, late
    w.advance(1.0)
    return w, tcb


def test_rack_takes_deep_reordering_for_reordering_once_seen() -> None:
    w, tcb = reorder_once_then_deep("rack")
    assert w.counters["SACKReorder"] == 1
    assert w.counters["RetransSegs"] == 0 and w.counters["FastRetransmits"] == 0
    assert not tcb.recovery.in_recovery


def test_duplicate_ack_counting_retransmits_the_reordered_segment() -> None:
    w, _tcb = reorder_once_then_deep("dupack")
    assert w.counters["FastRetransmits"] == 1 and w.counters["RetransSegs"] >= 1


def test_connections_without_sack_count_duplicate_acks() -> None:
    w = Wire({"tcp.window_scaling": False, "tcp.timestamps": False, "tcp.sack": False})
    conn, _proto, _synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS), rtt=RTT)
    assert conn.get_extra_info("tcp").recovery.rack is None


def test_a_lost_retransmission_is_resent_and_restarts_the_timer() -> None:
    w, conn, tcb, us = est()
    flight(w, conn, 14)  # ten leave, four wait
    t0 = w.now
    w.advance(RTT)
    w.inject(A, 1001, us + MSS)  # segment 0; segments 10 and 11 follow
    for k in range(3, 6):
        w.inject(A, 1001, us + MSS, opts=sack(us, (2, k)))
    sent = data(w.sent())
    assert [s.seq for s in sent][-1] == us + MSS  # the fast retransmission of segment 1
    # segments 10 and 11, sent with it, are SACKed an RTT later and the retransmission is
    # not: it was lost too, and goes again
    w.advance(RTT)
    w.inject(A, 1001, us + MSS, opts=sack(us, (2, 5), (10, 12)))
    again = [s for s in data(w.sent()) if s.seq == us + MSS]
    assert again and w.counters["LostRetransmits"] == 1
    # the timer restarted with it: 200 ms after segment 0's ACK nothing has timed out
    w.run_until(t0 + RTT + 0.21)
    assert w.counters["RTOs"] == 0
    w.inject(A, 1001, us + 14 * MSS)
    w.advance(1.0)
    assert w.counters["RTOs"] == 0 and not tcb.recovery.in_recovery

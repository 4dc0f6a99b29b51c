"""Recovery that undoes its mistakes, at segment level on the virtual clock: D-SACK blocks
sent for duplicate data (RFC 2883), reordered pure ACKs that PAWS lets through as Linux does
(tcp_disordered_ack), spurious retransmissions found by D-SACK (RFC 3708) and spurious
timeouts found by F-RTO (RFC 5682), each undone through the congestion control's on_undo."""

from __future__ import annotations

from typing import Any

import pytest
from tcp_support import PA, A, Seg, Wire

from layers.wire.tcp import TCPOptions

MSS = 1000


def est(settings: dict[str, Any] | None = None, *, sack: bool = True, ts: bool = False,
        rtt: float = 0.05) -> tuple[Wire, Any, int]:
    """An accepted connection whose handshake took ``rtt`` (so SRTT, and with it RACK's and
    TLP's timers, are those of a real path rather than of an instant one)."""
    base = {"tcp.window_scaling": False, "tcp.sack": sack, "tcp.timestamps": ts}
    w = Wire(base | (settings or {}))
    syn = TCPOptions(mss=MSS, sack_permitted=sack, timestamp=(100, 0) if ts else None)
    conn, _proto, synack = w.accept(iss=1000, syn_opts=syn, rtt=rtt)
    return w, conn, synack.seq + 1


def flight(w: Wire, conn: Any, n: int) -> list[Seg]:
    m = conn.get_extra_info("tcp").mss
    conn.write(b"".join(bytes([65 + i % 26]) * m for i in range(n)))
    return w.sent()


def blocks(seg: Seg) -> list[tuple[int, int]]:
    return list(seg.opts.sack or ())


# --- D-SACK blocks out (RFC 2883) -----------------------------------------------------------


def test_duplicate_old_segment_is_reported_in_a_dsack_block_once() -> None:
    w, _conn, us = est()
    w.inject(PA, 1001, us, b"a" * 100)
    w.advance(0.1)
    w.sent()
    w.inject(PA, 1001, us, b"a" * 100)  # the peer resent what we acknowledged
    (ack,) = w.sent()
    assert ack.ack == 1101 and blocks(ack) == [(1001, 1101)]
    assert w.counters["DSACKOldSent"] == 1
    # reported once: the next ACK carries no block
    w.inject(PA, 1101, us, b"b" * 100)
    w.advance(0.1)
    (ack2,) = w.sent()
    assert ack2.ack == 1201 and not blocks(ack2)


def test_partly_old_segment_reports_its_old_part_at_once() -> None:
    w, _conn, us = est()
    w.inject(PA, 1001, us, b"a" * 100)
    w.advance(0.1)
    w.sent()
    w.inject(PA, 1051, us, b"x" * 100)  # 50 old bytes, 50 new
    (ack,) = w.sent()  # without waiting for the delayed-ACK timer
    assert ack.ack == 1151 and blocks(ack) == [(1051, 1101)]


def test_duplicate_out_of_order_segment_reports_dsack_then_its_block() -> None:
    w, _conn, us = est()
    w.inject(PA, 1201, us, b"c" * 100)  # a hole at 1001..1201
    w.sent()
    w.inject(PA, 1201, us, b"c" * 100)
    (ack,) = w.sent()
    assert ack.ack == 1001 and blocks(ack) == [(1201, 1301), (1201, 1301)]
    assert w.counters["DSACKOfoSent"] == 1


def test_no_dsack_without_sack_or_when_disabled() -> None:
    for settings, sack in (({}, False), ({"tcp.dsack": False}, True)):
        w, _conn, us = est(settings, sack=sack)
        w.inject(PA, 1001, us, b"a" * 100)
        w.advance(0.1)
        w.sent()
        w.inject(PA, 1001, us, b"a" * 100)
        (ack,) = w.sent()
        assert ack.ack == 1101 and not blocks(ack)
        assert w.counters["DSACKOldSent"] == 0


# --- PAWS and reordered pure ACKs (Linux's tcp_disordered_ack) ---------------------------


def test_reordered_duplicate_ack_passes_paws() -> None:
    w, conn, us = est(ts=True)
    m = conn.get_extra_info("tcp").mss
    segs = flight(w, conn, 6)
    ours = segs[-1].opts.timestamp[0]  # type: ignore[index]
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(500, ours)))
    # two duplicate ACKs SACKing segments 2 and 3: the second left first (TSval 510) and
    # overtook the first (TSval 505) on the way
    sack = ((us + 2 * m, us + 4 * m),)
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(510, ours), sack=sack))
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(505, ours),
                                              sack=((us + 2 * m, us + 3 * m),)))
    assert w.counters.drops["paws"] == 0 and w.counters["PAWSEstab"] == 0
    assert w.counters["DupAcksIn"] == 2 and w.counters["PAWSDisorderedAck"] == 1


def test_paws_still_drops_old_acks_that_move_snd_una_or_the_window() -> None:
    w, conn, us = est(ts=True)
    m = conn.get_extra_info("tcp").mss
    segs = flight(w, conn, 6)
    ours = segs[-1].opts.timestamp[0]  # type: ignore[index]
    w.inject(A, 1001, us + m, wnd=30000, opts=TCPOptions(timestamp=(500, ours)))
    w.inject(A, 1001, us + 2 * m, opts=TCPOptions(timestamp=(400, ours)))  # moves SND.UNA
    assert w.counters.drops["paws"] == 1
    assert conn.get_extra_info("tcp").snd_una == us + m
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(400, ours)))  # opens the window
    assert w.counters.drops["paws"] == 2
    # one tick behind passes (TCP_PAWS_WINDOW)
    w.inject(A, 1001, us + 2 * m, opts=TCPOptions(timestamp=(499, ours)))
    assert w.counters.drops["paws"] == 2
    assert conn.get_extra_info("tcp").snd_una == us + 2 * m


# --- D-SACK undo of spurious retransmissions (RFC 3708, as Linux) ---------------------------


def sacks(us: int, m: int, *spans: tuple[int, int]) -> TCPOptions:
    return TCPOptions(sack=tuple((us + a * m, us + b * m) for a, b in spans))


def reorder_segment_one(w: Wire, conn: Any, us: int) -> tuple[int, int]:
    """Ten segments; the peer gets 0, then 2..9 (SACKed), and segment 1 late: the fast
    retransmission of 1 is spurious. Returns (cwnd before, cwnd after recovery)."""
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    flight(w, conn, 10)
    w.advance(0.05)
    w.inject(A, 1001, us + m)
    cwnd = tcb.cc.cwnd
    for k in range(3, 11):
        w.inject(A, 1001, us + m, opts=sacks(us, m, (2, k)))
    rtx = [s for s in w.sent() if s.payload]
    assert [s.seq for s in rtx] == [us + m]  # the fast retransmission of segment 1
    assert tcb.recovery.in_recovery
    w.advance(0.01)
    w.inject(A, 1001, us + 10 * m)  # the original of segment 1 arrived: all acknowledged
    assert not tcb.recovery.in_recovery and tcb.cc.cwnd < cwnd
    return cwnd, tcb.cc.cwnd


@pytest.mark.parametrize("recovery", ["rack", "dupack"])
def test_dsack_for_the_only_retransmission_undoes_the_reduction(recovery: str) -> None:
    w, conn, us = est({"tcp.recovery": recovery})
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    cwnd, _reduced = reorder_segment_one(w, conn, us)
    # then the retransmission: the peer reports it with a D-SACK below its ACK
    w.inject(A, 1001, us + 10 * m, opts=sacks(us, m, (1, 2)))
    assert w.counters["DSACKRecv"] == 1 and w.counters["DSACKUndo"] == 1
    assert tcb.cc.cwnd == cwnd  # NewReno's window from before the fast retransmit
    assert w.counters["DupAcksIn"] == 8  # the D-SACK was not taken for a duplicate ACK


@pytest.mark.parametrize("recovery", ["rack", "dupack"])
def test_dsack_of_data_never_retransmitted_undoes_nothing(recovery: str) -> None:
    w, conn, us = est({"tcp.recovery": recovery})
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    _cwnd, reduced = reorder_segment_one(w, conn, us)
    # the network duplicated segment 5, which we sent once: no proof about segment 1
    w.inject(A, 1001, us + 10 * m, opts=sacks(us, m, (5, 6)))
    assert w.counters["DSACKRecv"] == 1 and w.counters["DSACKUndo"] == 0
    assert tcb.cc.cwnd == reduced


# --- F-RTO (RFC 5682) --------------------------------------------------------------------


#: F-RTO is about what follows a timeout: the tail loss probe (RACK-TLP, the default) would
#: probe first, so these tests count duplicate ACKs and probe nothing
NO_TLP = {"tcp.recovery": "dupack"}


def rto_with_late_acks(settings: dict[str, Any] | None = None, *,
                       sack: bool = True) -> tuple[Wire, Any, int, int]:
    """Ten segments, no ACK until the timeout (200 ms, the floor) resends the first."""
    w, conn, us = est(NO_TLP | (settings or {}), sack=sack)
    tcb = conn.get_extra_info("tcp")
    flight(w, conn, 10)
    cwnd = tcb.cc.cwnd
    w.advance(0.25)
    (rtx,) = w.sent()
    assert rtx.seq == us and tcb.cc.cwnd == tcb.mss and w.counters["RTOs"] == 1
    return w, conn, us, cwnd


def test_frto_undoes_a_timeout_caused_by_a_delayed_ack_burst() -> None:
    for sack in (True, False):
        w, conn, us, cwnd = rto_with_late_acks(sack=sack)
        tcb = conn.get_extra_info("tcp")
        m = tcb.mss
        # the ACKs were only late: the first covers segments 0 and 1, never resent
        for k in range(2, 11, 2):
            w.inject(A, 1001, us + k * m)
        assert w.counters["SpuriousRTOs"] == 1 and w.counters["LossUndo"] == 1, sack
        assert tcb.cc.cwnd >= cwnd and not tcb.recovery.in_loss
        w.advance(1.0)
        assert w.counters["RetransSegs"] == 1  # nothing of the flight was sent again


def test_without_frto_the_same_acks_resend_the_flight() -> None:
    w, conn, us, _cwnd = rto_with_late_acks({"tcp.frto": False})
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    for k in range(2, 11, 2):
        w.inject(A, 1001, us + k * m)
    assert w.counters["SpuriousRTOs"] == 0 and tcb.cc.cwnd < 10 * m
    assert w.counters["RetransSegs"] > 1  # go-back-N resent segments that had arrived


def test_frto_sends_new_data_then_undoes_when_originals_are_acknowledged() -> None:
    w, conn, us = est(NO_TLP)
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    flight(w, conn, 14)  # ten leave (the initial window), four wait
    w.advance(0.25)
    assert [s.seq for s in w.sent()] == [us]
    w.inject(A, 1001, us + m)  # the retransmission (or the original) of segment 0 only
    new = w.sent()
    # step 2b: two segments of new data rather than segments 1 and 2 again
    assert [s.seq for s in new] == [us + 10 * m, us + 11 * m]
    w.inject(A, 1001, us + 3 * m)  # segments 1 and 2, sent once, arrived
    assert w.counters["SpuriousRTOs"] == 1 and w.counters["RetransSegs"] == 1


def test_frto_finds_a_real_loss_and_goes_back() -> None:
    w, conn, us = est(NO_TLP)
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    flight(w, conn, 14)
    w.advance(0.25)
    w.sent()
    w.inject(A, 1001, us + m)
    w.sent()  # the two new segments
    # segment 1 was lost too: the peer SACKs the new data and no more
    w.inject(A, 1001, us + m, opts=sacks(us, m, (10, 12)))
    assert w.counters["SpuriousRTOs"] == 0 and tcb.recovery.in_loss
    resent = [s.seq for s in w.sent() if s.payload]
    assert resent and resent[0] == us + m  # go-back-N from the first unacknowledged byte


def test_a_reordered_old_ack_is_no_dsack() -> None:
    w, conn, us = est()
    m = conn.get_extra_info("tcp").mss
    flight(w, conn, 6)
    w.advance(0.05)
    w.inject(A, 1001, us + 5 * m)
    # an older ACK overtaken on the way: its SACK block is below SND.UNA now, but above the
    # ACK it carries, so it reports nothing received twice (RFC 2883 4.1)
    w.inject(A, 1001, us + 2 * m, opts=sacks(us, m, (3, 4)))
    assert w.counters["DSACKRecv"] == 0


def test_a_partial_ack_of_a_reordered_hole_undoes_nothing_while_others_are_resent() -> None:
    w, conn, us = est({"tcp.recovery": "dupack"}, ts=True)
    tcb = conn.get_extra_info("tcp")
    m = tcb.mss
    segs = flight(w, conn, 10)
    old = segs[0].opts.timestamp[0]  # type: ignore[index]
    w.advance(0.05)

    def ack(n: int, *spans: tuple[int, int]) -> None:
        w.inject(A, 1001, us + n * m, opts=TCPOptions(
            timestamp=(500, old), sack=tuple((us + a * m, us + b * m) for a, b in spans)))

    ack(1)
    # segments 1 and 3 missing: 1 was only late, 3 was lost
    for k in range(5, 10):
        ack(1, (2, 3), (4, k))
    resent = sorted({s.seq for s in w.sent() if s.payload})
    assert resent == [us + m, us + 3 * m] and tcb.recovery.in_recovery
    reduced = tcb.cc.cwnd
    # the late original of segment 1 arrives: a partial ACK echoing a timestamp from before
    # the retransmissions. Segment 3's retransmission is still out: nothing is undone
    ack(3, (4, 9))
    assert w.counters["PartialUndo"] == 0 and tcb.recovery.in_recovery
    assert tcb.cc.cwnd <= reduced + m

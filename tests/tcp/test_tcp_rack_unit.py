"""The sans-IO RACK and TLP state (layers_tcp.rack) on hand-made transmission records:
RACK.xmit_ts and RACK.rtt from the newest delivered segment, the ambiguity of retransmitted
ones, reordering detection, the reordering window and its D-SACK adaptation, loss marking
and the reordering timer, the probe timeout and what an ACK says about a probe."""

from __future__ import annotations

import pytest
from layers_tcp.rack import REO_WND_PERSIST, Rack, TailLossProbe
from layers_tcp.rate import LOST


def rec(start: int, end: int, sent: float, *, retrans: bool = False,
        sacked: bool = False) -> list:
    # START, END, SENT, DELIVERED, DELIVERED_TIME, FIRST_SENT, APP_LIMITED, RETRANS, SACKED,
    # LOST (layers_tcp.rate)
    return [start, end, sent, 0, 0.0, 0.0, False, retrans, sacked, False]


def test_newest_delivered_segment_sets_xmit_ts_and_rtt() -> None:
    r = Rack()
    a, b = rec(0, 100, 1.0), rec(100, 200, 1.0)
    assert not r.on_delivered([a, b], 1.05, None)
    assert (r.xmit_ts, r.end_seq, r.fack) == (1.0, 200, 200)
    assert r.rtt == pytest.approx(0.05)
    # a retransmission delivered sooner than the minimum RTT after it left is ambiguous
    c = rec(0, 100, 1.06, retrans=True)
    r.on_delivered([c], 1.07, 0.05)
    assert r.xmit_ts == 1.0
    r.on_delivered([c], 1.12, 0.05)
    assert r.xmit_ts == 1.06 and r.rtt == pytest.approx(0.06)


def test_reordering_is_a_never_retransmitted_segment_below_fack() -> None:
    r = Rack()
    r.on_delivered([rec(200, 300, 1.0)], 1.05, None)
    assert not r.on_delivered([rec(100, 200, 1.0, retrans=True)], 1.1, None)
    assert r.on_delivered([rec(0, 100, 1.0)], 1.1, None)  # first time: True
    assert r.reordering_seen
    assert not r.on_delivered([rec(50, 60, 1.0)], 1.1, None)  # seen already


def test_reordering_window() -> None:
    r = Rack()
    # no reordering seen: none in recovery or with DupThresh segments SACKed
    assert r.reo_wnd(True, 0, 0.04, 0.05) == 0.0
    assert r.reo_wnd(False, 3, 0.04, 0.05) == 0.0
    assert r.reo_wnd(False, 2, 0.04, 0.05) == pytest.approx(0.01)  # min_rtt / 4
    r.reordering_seen = True
    assert r.reo_wnd(True, 5, 0.04, 0.05) == pytest.approx(0.01)
    # D-SACKs widen it once per round trip, up to SRTT
    r.on_dsack(1000, 5000)
    r.on_dsack(2000, 6000)  # same round (SND.UNA below 5000): no change
    assert r.reo_wnd_mult == 2 and r.reo_wnd(False, 0, 0.04, 0.05) == pytest.approx(0.02)
    r.on_dsack(5000, 9000)
    r.on_dsack(9000, 9500)
    assert r.reo_wnd_mult == 4 and r.reo_wnd(False, 0, 0.04, 0.03) == pytest.approx(0.03)
    # and shrinks back after 16 recoveries without any
    for _ in range(REO_WND_PERSIST - 1):
        r.on_recovery_end()
    assert r.reo_wnd_mult == 4
    r.on_recovery_end()
    assert r.reo_wnd_mult == 1


def test_detect_loss_marks_what_is_due_and_times_the_rest() -> None:
    r = Rack()
    recs = [rec(0, 100, 1.0), rec(100, 200, 1.01), rec(200, 300, 1.02, sacked=True),
            rec(300, 400, 1.03)]
    r.on_delivered([recs[2]], 1.07, None)  # RACK.rtt 0.05, xmit_ts 1.02
    lost, wait = r.detect_loss(recs, 1.07, 0.01)
    # 0: 1.0 + 0.05 + 0.01 <= 1.07, lost; 1: due at 1.07 too; 3 was sent after: not judged
    assert [x[0] for x in lost] == [0, 100] and wait == 0.0
    assert recs[0][LOST] and recs[1][LOST] and not recs[3][LOST]
    recs2 = [rec(0, 100, 1.0), rec(100, 200, 1.01), rec(200, 300, 1.02, sacked=True)]
    r2 = Rack()
    r2.on_delivered([recs2[2]], 1.07, None)
    lost, wait = r2.detect_loss(recs2, 1.065, 0.01)
    assert [x[0] for x in lost] == [0] and wait == pytest.approx(0.005)
    # marked lost once
    lost, _ = r2.detect_loss(recs2, 1.08, 0.01)
    assert [x[0] for x in lost] == [100]


def test_retransmissions_sent_later_do_not_hide_older_originals() -> None:
    r = Rack()
    recs = [rec(0, 100, 2.0, retrans=True), rec(100, 200, 1.0), rec(200, 300, 1.5, sacked=True)]
    r.on_delivered([recs[2]], 1.6, None)
    lost, _ = r.detect_loss(recs, 1.6, 0.0)
    assert [x[0] for x in lost] == [100]


def test_probe_timeout() -> None:
    assert TailLossProbe.pto(None, False, 0.2, 5.0) == 1.0
    assert TailLossProbe.pto(0.05, False, 0.2, 5.0) == pytest.approx(0.102)
    assert TailLossProbe.pto(0.05, True, 0.2, 5.0) == pytest.approx(0.3)  # delayed ACK
    assert TailLossProbe.pto(0.05, True, 0.2, 0.25) == 0.25  # never after the RTO


def test_what_an_ack_says_about_a_probe() -> None:
    t = TailLossProbe()
    assert t.on_ack(100, True, False, False) == TailLossProbe.NONE  # none outstanding
    t.sent(1000, retransmission=False)
    assert t.on_ack(900, True, False, False) == TailLossProbe.NONE
    assert t.on_ack(1000, True, False, False) == TailLossProbe.DONE  # new data delivered
    t.sent(1000, retransmission=True)
    assert t.on_ack(1000, True, False, False) == TailLossProbe.NONE
    assert t.on_ack(1000, False, False, False) == TailLossProbe.DONE  # a bare duplicate
    t.sent(1000, retransmission=True)
    assert t.on_ack(1000, False, True, False) == TailLossProbe.DONE  # D-SACKed: not needed
    t.sent(1000, retransmission=True)
    assert t.on_ack(1200, True, False, False) == TailLossProbe.RECOVERED
    assert t.end_seq is None

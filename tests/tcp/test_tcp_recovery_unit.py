"""Loss recovery (layers_tcp.recovery.LossRecovery) driven on its own: no stack, no event loop,
no segments. A small host stands for the connection (its sequence numbers, send buffer,
scoreboard and NewReno) and records what recovery sends; each test feeds the events the
connection would and checks RFC 6582's partial-ACK rule, PRR's window, undo and F-RTO."""

from __future__ import annotations

from typing import Any

from layers_tcp.newreno import NewReno
from layers_tcp.rate import RateEstimator
from layers_tcp.recovery import LossRecovery
from layers_tcp.rtt import RttEstimator
from layers_tcp.sack import Scoreboard
from layers_tcp.states import ESTABLISHED

from layers.congestion import CongestionContext, CongestionControl
from layers.counters import Counters

MSS = 1000
ISS = 5000


class _Buf:
    def __init__(self, size: int) -> None:
        self.size = size


class _Settings:
    rto_min = 0.2


class _TCP:
    settings = _Settings()


class _Stack:
    now = 10.0


class Host:
    """The part of a connection loss recovery uses (layers_tcp.recovery.RecoveryHost)."""

    def __init__(self, *, sack: bool, sent: int, buffered: int, ts: bool = False) -> None:
        self.c = Counters("tcp")
        self.stack: Any = _Stack()
        self.tcp: Any = _TCP()
        self.state = ESTABLISHED
        self.snd_una = ISS
        self.snd_nxt = self.snd_max = ISS + sent * MSS
        self.snd_wnd = 1 << 20
        self.buf_seq = ISS
        self.sndbuf: Any = _Buf(buffered * MSS)
        self.fin_queued = False
        self.mss = MSS
        self.sack_ok = sack
        self.ts_ok = ts
        self.sb = Scoreboard()
        self.cc: CongestionControl = NewReno(CongestionContext(mss=MSS))
        self.cc.on_start(MSS, 0.0)
        self.rtt = RttEstimator(1.0, 0.2, 120.0)
        self.rtt_seq: int | None = None
        self.rate = RateEstimator()
        self.min_rtt: float | None = None
        self.pace_next = 0.0
        self.rto_at: float | None = None
        self.reo_at: float | None = None
        self.pto_at: float | None = None
        self.ts = 100
        #: (seq, n, retransmit) of each _send_range
        self.sent: list[tuple[int, int, bool]] = []
        self.rec = LossRecovery(self)

    # the connection's methods recovery calls
    def _in_flight(self) -> int:
        sb = self.sb
        if self.rec.in_loss:
            if sb.ranges:
                return self.snd_nxt - self.snd_una - sb.sacked_below(self.snd_nxt)
        elif self.rec.in_recovery or sb.ranges or sb.dup_bytes:
            return sb.pipe(self.snd_una, self.snd_max)
        return self.snd_nxt - self.snd_una

    def _rto(self) -> float:
        return 1.0

    def _ts_now(self) -> int:
        return self.ts

    def _pace_later(self) -> None:
        raise AssertionError("not paced")

    def _send_range(self, seq: int, n: int, *, retransmit: bool) -> None:
        self.sent.append((seq, n, retransmit))
        rec = self.rec
        if retransmit and (rec.in_recovery or rec.in_loss):
            rec.on_retransmit(seq, seq + n, 1)
        if rec.in_recovery:
            rec.prr.out += n
            if retransmit:
                self.sb.retransmitted(seq, seq + n, self.snd_max)
        if seq + n > self.snd_max:
            self.snd_max = seq + n

    # what the connection does with an ACK's cumulative part
    def ack_to(self, ack: int) -> int:
        acked = ack - self.snd_una
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        self.sb.trim(ack)
        return acked


def _three_dupacks(h: Host) -> None:
    for i in range(3):
        if h.sack_ok:
            # each SACKs one more segment above the hole at SND.UNA
            seq = ISS + (i + 1) * MSS
            newly = h.sb.add([(seq, seq + MSS)], h.snd_una, h.snd_max)
            assert h.rec.on_dupack(h.stack.now, newly) == MSS
        else:
            assert h.rec.on_dupack(h.stack.now, 0) == MSS  # each stands for one segment
    assert h.rec.in_recovery


def test_third_duplicate_ack_enters_recovery_and_the_head_goes_at_once() -> None:
    h = Host(sack=False, sent=10, buffered=10)
    h.rec.on_dupack(10.0, 0)
    h.rec.on_dupack(10.0, 0)
    assert not h.rec.in_recovery and h.c["FastRetransmits"] == 0
    h.rec.on_dupack(10.0, 0)
    rec = h.rec
    assert rec.in_recovery and rec.recover == ISS + 10 * MSS
    assert h.cc.ssthresh == 5 * MSS  # NewReno: half the flight
    assert h.sb.lost_end == ISS + MSS and rec.lost_total == 1 and rec.newly_lost == MSS
    h.cc.cwnd = 0  # PRR allows nothing: the fast retransmit still goes
    rec.retransmit_lost()
    assert h.sent == [(ISS, MSS, True)]
    assert not rec.force_rexmit and rec.undo_ts == h.ts
    rec.retransmit_lost()
    assert len(h.sent) == 1  # the rest waits for what PRR allows


def test_partial_ack_without_sack_marks_the_next_segment_lost_and_sends_it() -> None:
    h = Host(sack=False, sent=10, buffered=10)
    _three_dupacks(h)
    rec = h.rec
    rec.retransmit_lost()
    assert h.sent == [(ISS, MSS, True)]
    # the retransmission is acknowledged, the rest is not: a partial ACK (RFC 6582 3.2 step 5)
    acked = h.ack_to(ISS + MSS)
    rec.partial_ack(acked, acked)
    assert h.sb.lost_end == ISS + 2 * MSS and rec.force_rexmit
    assert rec.lost_total == 2
    assert h.cc.cwnd >= h._in_flight() + MSS  # room for the retransmission that must go
    rec.retransmit_lost()
    assert h.sent[-1] == (ISS + MSS, MSS, True)
    # and the episode ends once SND.UNA reaches ``recover``
    h.ack_to(rec.recover)
    rec.exit_recovery(10.0)
    assert not rec.in_recovery and rec.dupacks == 0 and h.cc.cwnd <= 5 * MSS + MSS


def test_partial_ack_with_sack_marks_but_leaves_the_sending_to_prr() -> None:
    h = Host(sack=True, sent=10, buffered=10)
    _three_dupacks(h)
    rec = h.rec
    rec.retransmit_lost()
    acked = h.ack_to(ISS + MSS)
    rec.partial_ack(acked, acked)
    assert h.sb.lost_end == ISS + 2 * MSS and not rec.force_rexmit


def test_undo_restores_the_window_and_ends_recovery() -> None:
    h = Host(sack=False, sent=10, buffered=10, ts=True)
    cwnd, ssthresh = h.cc.cwnd, h.cc.ssthresh
    _three_dupacks(h)
    h.rec.retransmit_lost()
    assert h.cc.ssthresh < ssthresh
    # an ACK of everything echoing a timestamp older than the retransmission's: Eifel
    h.ack_to(h.rec.recover)
    h.rec.eifel(h.snd_una, h.ts - 5, 10.0)
    assert not h.rec.in_recovery and h.rec.undo_ts is None
    assert (h.cc.cwnd, h.cc.ssthresh) == (cwnd, ssthresh)
    assert h.c["FullUndo"] == 1


def test_eifel_ignores_an_echo_of_the_retransmission() -> None:
    h = Host(sack=False, sent=10, buffered=10, ts=True)
    _three_dupacks(h)
    h.rec.retransmit_lost()
    h.rec.eifel(ISS + MSS, h.ts, 10.0)  # it echoes the retransmission: no proof
    assert h.rec.in_recovery and h.c["FullUndo"] + h.c["PartialUndo"] == 0


def test_dsack_for_every_retransmission_undoes() -> None:
    h = Host(sack=True, sent=10, buffered=10)
    cwnd = h.cc.cwnd
    _three_dupacks(h)
    h.rec.retransmit_lost()
    h.rec.on_dsack(ISS, ISS + MSS, 10.0)
    assert not h.rec.in_recovery and h.c["DSACKUndo"] == 1 and h.cc.cwnd == cwnd


def test_timeout_goes_back_n_and_frto_step_2b_sends_new_data() -> None:
    h = Host(sack=True, sent=4, buffered=10)
    rec = h.rec
    rec.on_rto(10.0, 1, True)
    assert rec.in_loss and rec.recover == ISS + 4 * MSS and rec.frto == 1
    assert h.sent == [(ISS, MSS, True)] and h.snd_nxt == ISS + MSS
    assert h.cc.cwnd == MSS and rec.lost_total == 4
    # step 2b: the ACK covers only the retransmission; new data, not the rest of the flight
    h.ack_to(ISS + MSS)
    rec.frto_ack(ISS + MSS, True, False, False, 10.1)
    assert rec.frto == 2 and rec.frto_send and h.snd_nxt == ISS + 4 * MSS
    rec.frto_new_data()
    assert h.sent[1:] == [(ISS + 4 * MSS, MSS, False), (ISS + 5 * MSS, MSS, False)]
    assert not rec.frto_send
    # step 3b: the next ACK covers data never retransmitted: the timeout was spurious
    assert rec.frto_acked_originals(ISS + MSS, ISS + 3 * MSS)
    h.ack_to(ISS + 3 * MSS)
    rec.frto_ack(ISS + 3 * MSS, True, True, False, 10.2)
    assert not rec.in_loss and h.c["SpuriousRTOs"] == 1
    assert h.snd_nxt == h.snd_max


def test_frto_step_3a_a_duplicate_ack_after_new_data_goes_back() -> None:
    h = Host(sack=True, sent=4, buffered=10)
    rec = h.rec
    rec.on_rto(10.0, 1, True)
    h.ack_to(ISS + MSS)
    rec.frto_ack(ISS + MSS, True, False, False, 10.1)
    rec.frto_new_data()
    rec.frto_ack(ISS + MSS, False, False, True, 10.2)
    assert rec.frto == 0 and rec.in_loss and h.snd_nxt == h.snd_una


def test_second_timeout_forgets_the_scoreboard_and_does_not_arm_frto() -> None:
    h = Host(sack=True, sent=4, buffered=10)
    h.sb.add([(ISS + 2 * MSS, ISS + 3 * MSS)], ISS, h.snd_max)
    h.rec.on_rto(10.0, 1, True)
    assert h.sb.ranges  # the first timeout keeps what the peer holds
    h.rec.on_rto(11.0, 2, True)
    assert not h.sb.ranges and h.rec.frto == 0

"""The engine against the layers.congestion contract, on the virtual clock: a recording
congestion control (a test plugin registered through the hook) sees each event in order under
scripted loss (duplicate ACKs, SACK), timeouts, spurious timeouts and spurious fast
retransmits (undo, RFC 3522 with timestamps); rate samples on a known ACK clock; algorithm
settings; the per-connection choice; telemetry samples."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from layers_tcp.newreno import NewReno
from tcp_support import PEER_I, PLAIN, A, Recorder, Seg, Wire

from layers.congestion import (
    CongestionContext,
    CongestionControlBase,
    CongestionControlInfo,
    RateSample,
)
from layers.errors import ConfigurationError
from layers.hookspecs import hookimpl
from layers.telemetry import ConnectionSample
from layers.wire.tcp import TCPOptions

MSS = 1000


class Recording(CongestionControlBase):
    """NewReno-ish halving, recording every event (packet sends only counted)."""

    name = "recording"

    def __init__(self, ctx: CongestionContext) -> None:
        super().__init__(ctx)
        self.events: list[str] = []
        self.samples: list[RateSample] = []
        self.sent = 0
        self.cwnd_fixed: int | None = ctx.settings.get("fixed") or None
        self.pacing_rate = float(ctx.settings.get("pace", 0.0)) or None

    def on_start(self, mss: int, now: float) -> None:
        super().on_start(mss, now)
        if self.cwnd_fixed:
            self.cwnd = self.cwnd_fixed * mss
        self.events.append("start")

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        self.sent += 1

    def on_ack(self, rs: RateSample) -> None:
        self.samples.append(rs)
        tag = "ack/rec" if rs.in_recovery else "ack"
        if not self.events or self.events[-1] != tag:
            self.events.append(tag)  # runs of ACKs collapse to one entry

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        super().on_enter_recovery(in_flight, now)
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.events.append("enter")

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        self.events.append("exit")

    def on_timeout(self, in_flight: int, now: float) -> None:
        super().on_timeout(in_flight, now)
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.events.append("timeout")

    def on_undo(self, now: float) -> None:
        super().on_undo(now)
        self.events.append("undo")

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        return {"events": len(self.events)}


class RecordingPlugin:
    @hookimpl
    def layers_congestion_controls(self) -> list[CongestionControlInfo]:
        return [CongestionControlInfo("recording", Recording, {"fixed": 0, "pace": 0.0},
                                      "records events", "tests")]


def est(settings: dict[str, Any] | None = None, *, sack: bool = False, ts: bool = False,
        **options: Any) -> tuple[Wire, Any, int]:
    base = PLAIN | {"tcp.congestion_control": "recording", "tcp.sack": sack,
                    "tcp.timestamps": ts}
    w = Wire(base | (settings or {}), plugins=["ipv4", "tcp", RecordingPlugin()])
    syn = TCPOptions(mss=MSS, sack_permitted=sack, timestamp=(100, 0) if ts else None)
    conn, _proto, synack = w.accept(iss=1000, syn_opts=syn, **options)
    return w, conn, synack.seq + 1


def flight(w: Wire, conn: Any, n: int) -> list[Seg]:
    """``n`` full segments (``conn.mss``: 988 bytes with timestamps)."""
    conn.write(b"".join(bytes([65 + i % 26]) * conn.mss for i in range(n)))
    return w.sent()


def tsval(seg: Seg) -> int:
    """The TSval ``seg`` carries (the connection negotiated timestamps)."""
    assert seg.opts.timestamp is not None, "segment without a timestamp option"
    return seg.opts.timestamp[0]


def sack(us: int, *blocks: tuple[int, int], tsecr: int | None = None,
         mss: int = MSS) -> TCPOptions:
    return TCPOptions(sack=tuple((us + a * mss, us + b * mss) for a, b in blocks),
                      timestamp=None if tsecr is None else (500, tsecr))


# --- the events, in order -----------------------------------------------------------------


def test_events_in_order_under_duplicate_ack_loss() -> None:
    w, conn, us = est()
    cc = conn.cc
    assert isinstance(cc, Recording) and cc.events == ["start"]
    assert cc.cwnd == 10 * MSS  # on_start set the initial window with the real MSS
    segs = flight(w, conn, 10)
    assert cc.sent == 10
    w.inject(A, 1001, us + MSS)  # segment 0 arrived, 1 lost
    for _ in range(3):
        w.inject(A, 1001, us + MSS)
    rtx = w.sent()
    assert rtx[0].seq == us + MSS and rtx[0].payload == segs[1].payload
    w.inject(A, 1001, us + 10 * MSS)  # the retransmission filled the hole
    assert cc.events == ["start", "ack", "enter", "ack/rec", "exit"]
    assert not conn.recovery.in_recovery
    # without SACK each duplicate ACK stood for one segment delivered (RFC 6937)
    dup = cc.samples[1]
    assert dup.delivered == MSS and dup.newly_acked == 0 and dup.in_recovery is False
    last = cc.samples[-1]
    assert last.in_recovery and last.delivered_total == 10 * MSS
    assert w.counters["FastRetransmits"] == 1


def test_events_in_order_under_sack_loss() -> None:
    # loss by RFC 6675's DupThresh (tcp.recovery=dupack): RACK's timing is its own test
    w, conn, us = est({"tcp.recovery": "dupack"}, sack=True)
    cc = conn.cc
    segs = flight(w, conn, 10)
    w.inject(A, 1001, us + 2 * MSS)
    for k in range(3):
        w.inject(A, 1001, us + 2 * MSS, opts=sack(us, (3, 4 + k)))
    (rtx,) = w.sent()
    assert rtx.seq == us + 2 * MSS and rtx.payload == segs[2].payload
    assert conn.recovery.in_recovery
    # a SACK that delivers data gives a sample marked in recovery; pipe per RFC 6675
    rs = cc.samples[-1]
    assert rs.delivered == MSS and rs.newly_acked == 0
    # segment 2, by three SACKed above
    assert rs.newly_lost == MSS and conn.recovery.lost_total == 1
    # 10 sent, 2 acknowledged, 3 SACKed, 1 lost (before its retransmission left)
    assert rs.in_flight == 4 * MSS and conn.in_flight() == 5 * MSS
    w.inject(A, 1001, us + 10 * MSS)
    assert cc.events == ["start", "ack", "enter", "ack/rec", "exit"]
    assert cc.samples[-1].newly_acked == 8 * MSS
    # the retransmission and the four segments above the SACKed ones; SACKed data was
    # delivered when it was SACKed
    assert cc.samples[-1].delivered == 5 * MSS


def test_prr_converges_on_ssthresh_without_a_burst() -> None:
    # loss by RFC 6675's DupThresh (tcp.recovery=dupack): RACK's timing is its own test
    w, conn, us = est({"tcp.recovery": "dupack"}, sack=True)
    cc = conn.cc
    flight(w, conn, 40)  # ten go (the initial window), thirty wait
    # segment 0 lost; the nine after it SACKed one ACK at a time
    per_ack = []
    for k in range(2, 11):
        w.inject(A, 1001, us, opts=sack(us, (1, k)))
        per_ack.append(len(w.sent()))
    # limited transmit (RFC 3042) sent two more before recovery: the flight was 12
    assert conn.recovery.in_recovery and cc.ssthresh == 6 * MSS
    # two limited transmissions, the fast retransmit at the third duplicate; then (RFC 6937)
    # ssthresh/RecoverFS = 1/2 segment per segment delivered while the pipe (9, 8, 7) is
    # above ssthresh: nothing more, since the retransmission used the first share; at the
    # pipe's 6 = ssthresh nothing, then one segment per segment delivered (PRR-SSRB)
    assert per_ack == [1, 1, 1, 0, 0, 0, 1, 1, 1], per_ack
    assert conn.in_flight() <= cc.ssthresh + MSS


def test_timeout_event_then_slow_start() -> None:
    w, conn, us = est()
    cc = conn.cc
    flight(w, conn, 4)
    w.advance(0.25)
    (rtx,) = w.sent()
    assert rtx.seq == us
    assert cc.events == ["start", "timeout"] and cc.cwnd == MSS
    w.inject(A, 1001, us + 4 * MSS)
    assert cc.events == ["start", "timeout", "ack"]
    assert w.counters["RTOs"] == 1 and w.counters["SpuriousRTOs"] == 0


def test_spurious_timeout_is_undone_by_timestamps() -> None:
    w, conn, us = est(ts=True)
    cc = conn.cc
    m = conn.mss
    segs = flight(w, conn, 4)
    cwnd = cc.cwnd
    w.advance(0.25)  # the handshake's RTT sample (0 s here) made the RTO rto_min, 0.2 s
    (rtx,) = w.sent()
    assert rtx.seq == us and tsval(rtx) > tsval(segs[3])
    assert cc.cwnd == m
    # the ACK for the original flight arrives late: it echoes the original timestamp
    w.inject(A, 1001, us + 4 * m, opts=TCPOptions(timestamp=(200, tsval(segs[3]))))
    assert cc.events == ["start", "timeout", "undo", "ack"]
    assert cc.cwnd == cwnd
    assert w.counters["SpuriousRTOs"] == 1 and w.counters["LossUndo"] == 1


def test_genuine_timeout_is_not_undone() -> None:
    w, conn, us = est(ts=True)
    cc = conn.cc
    m = conn.mss
    flight(w, conn, 4)
    w.advance(0.25)
    (rtx,) = w.sent()
    # the retransmission got through: the ACK echoes its timestamp
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(200, tsval(rtx))))
    assert cc.events == ["start", "timeout", "ack"] and cc.cwnd <= 2 * m
    assert w.counters["SpuriousRTOs"] == 0


def test_spurious_fast_retransmit_is_undone() -> None:
    w, conn, us = est(sack=True, ts=True)
    cc = conn.cc
    m = conn.mss
    segs = flight(w, conn, 10)
    ts1 = tsval(segs[1])
    w.advance(0.01)
    w.inject(A, 1001, us + m, opts=TCPOptions(timestamp=(200, tsval(segs[0]))))
    w.sent()
    cwnd_before = cc.cwnd
    w.advance(0.01)
    for k in range(3):  # segment 1 was reordered, not lost
        w.inject(A, 1001, us + m, opts=sack(us, (2, 3 + k), tsecr=ts1, mss=m))
    rtx = w.sent()
    assert rtx[0].seq == us + m and conn.recovery.in_recovery
    assert cc.ssthresh < cwnd_before
    # the original segment 1 arrives: the ACK echoes its (older) timestamp
    w.inject(A, 1001, us + 10 * m, opts=TCPOptions(timestamp=(600, ts1)))
    assert cc.events == ["start", "ack", "enter", "ack/rec", "exit", "undo", "ack"]
    assert w.counters["FullUndo"] == 1
    assert cc.cwnd == cwnd_before and cc.ssthresh == 1 << 30


# --- rate samples ---------------------------------------------------------------------------


def test_delivery_rate_on_a_known_ack_clock() -> None:
    """The peer acknowledges one segment every 1 ms (1 MB/s): after the first flight the
    samples measure 1 MB/s, whatever the window."""
    w, conn, us = est()
    cc = conn.cc
    conn.write(b"r" * 200 * MSS)
    acked = 0
    for _ in range(120):
        w.advance(0.001)
        acked += MSS
        w.inject(A, 1001, us + acked)
        w.sent()
    rates = [rs.delivery_rate for rs in cc.samples[-60:]]
    assert all(abs(r - 1e6) / 1e6 < 0.03 for r in rates), rates[:5]
    assert abs(conn.delivery_rate - 1e6) / 1e6 < 0.03
    assert conn.describe()["delivery_rate"] == pytest.approx(1e6, rel=0.03)
    assert cc.samples[-1].min_rtt is not None and cc.samples[-1].rtt is not None


def test_app_limited_samples_are_marked() -> None:
    w, conn, us = est()
    cc = conn.cc
    conn.write(b"a" * MSS)  # far less than the window: the application limits
    w.sent()
    w.advance(0.01)
    w.inject(A, 1001, us + MSS)
    assert cc.samples[-1].is_app_limited


# --- pacing ---------------------------------------------------------------------------------


def test_pacing_spaces_segments_at_the_rate() -> None:
    rate = 1_000_000.0  # bytes/s
    w, conn, _us = est({"recording.pace": rate, "recording.fixed": 100})
    conn.write(b"p" * 20 * MSS)
    segs: list[Seg] = []
    t0 = w.now
    while len(segs) < 20 and w.now < t0 + 1.0:
        w.advance(0.0001)
        segs += w.sent()
    assert len(segs) == 20
    gaps = [b.time - a.time for a, b in itertools.pairwise(segs)]
    expect = (MSS + 40) / rate
    assert all(abs(g - expect) < 2e-4 for g in gaps), gaps
    assert conn.describe()["pacing_rate"] == rate


# --- settings and selection -----------------------------------------------------------------


def test_algorithm_settings_reach_the_context() -> None:
    w, conn, _us = est({"recording.fixed": "4"})
    assert conn.cc.cwnd == 4 * MSS
    assert w.tcp.cc_settings["recording"] == {"fixed": 4, "pace": 0.0}


def test_unknown_algorithm_setting_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"recording\.fixed, recording\.pace"):
        est({"recording.nope": 1})
    with pytest.raises(ConfigurationError, match="should be an integer"):
        est({"recording.fixed": "many"})


def test_missing_algorithm_names_the_plugin_to_add() -> None:
    with pytest.raises(ConfigurationError,
                       match=r"'cubic' is not available: install/add the cubic plugin "
                             r"\(--plugins \.\.\.,cubic\); available: newreno, recording"):
        est({"tcp.congestion_control": "cubic"})
    w, _conn, _us = est()
    with pytest.raises(ConfigurationError, match="install/add the bbr plugin"):
        w.tcp.connect(Recorder(), PEER_I, 80, congestion_control="bbr")


def test_per_connection_choice() -> None:
    w, _conn, _us = est()
    other = w.tcp.connect(Recorder(), PEER_I, 80, congestion_control="newreno")
    assert other.cc.name == "newreno"


# --- telemetry ------------------------------------------------------------------------------


def test_telemetry_samples_per_ack_stack_and_connection() -> None:
    w, conn, us = est()
    stack_samples: list[ConnectionSample] = []
    conn_samples: list[ConnectionSample] = []
    flight(w, conn, 4)
    sub = w.stack.telemetry.subscribe(stack_samples.append)
    csub = conn.subscribe(conn_samples.append, interval=1.0)
    for k in range(1, 5):
        w.advance(0.01)
        w.inject(A, 1001, us + k * MSS)
    assert len(stack_samples) == 4 and len(conn_samples) == 1
    s = stack_samples[-1]
    assert s.flow == "10.0.0.1:80->10.0.0.9:40000" and s.cc == "recording"
    assert s.delivered == 4 * MSS and s.in_flight == 0 and s.cwnd == conn.cc.cwnd
    assert s.cc_state == {"events": len(conn.cc.events)}
    sub.close()
    csub.close()
    conn.write(b"z" * MSS)
    w.inject(A, 1001, us + 5 * MSS)
    assert len(stack_samples) == 4 and len(conn_samples) == 1
    d = conn.describe()
    for key in ("cwnd", "ssthresh", "srtt", "rttvar", "min_rtt", "rto", "delivery_rate",
                "pacing_rate", "retransmits", "lost", "in_flight", "cc", "cc_state"):
        assert key in d


def _ack(acked: int, mss: int) -> RateSample:
    return RateSample(
        now=1.0, delivered=acked, newly_acked=acked, newly_lost=0, prior_delivered=0,
        delivered_total=acked, interval=0.0, delivery_rate=0.0, is_app_limited=False,
        rtt=None, min_rtt=None, srtt=None, prior_in_flight=acked, in_flight=0, ece=False,
        in_recovery=False, mss=mss)


def test_slow_start_counts_a_super_segments_ack_as_the_acks_of_its_segments() -> None:
    """RFC 3465's L = 2 segments per ACK, where one ACK of a 44-segment TSO super-segment
    (a receiver's offloads merged them) stands for the 22 ACKs its segments would have drawn;
    a stretch ACK of separately sent segments still grows the window by two segments."""
    mss = 1460
    one = NewReno(CongestionContext(mss=mss))
    one.on_start(mss, 0.0)
    w = one.cwnd
    for _ in range(44):
        one.on_packet_sent(mss, 0, 0.0, False)
    one.on_ack(_ack(44 * mss, mss))
    assert one.cwnd == w + 2 * mss
    tso = NewReno(CongestionContext(mss=mss))
    tso.on_start(mss, 0.0)
    tso.on_packet_sent(44 * mss, 44 * mss, 0.0, False)
    tso.on_ack(_ack(44 * mss, mss))
    assert tso.cwnd == w + 44 * mss

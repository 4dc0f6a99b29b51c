"""Retransmission and congestion at segment level: RFC 6298 timing and backoff, Karn, giving
up (retries, user timeout, soft errors), fast retransmit and NewReno recovery, SACK-driven
recovery, ICMP errors, keepalive, and a congestion control supplied by another plugin."""

from __future__ import annotations

import errno
from typing import Any

from tcp_support import PEER, PEER_I, PEER_PORT, PLAIN, US, A, Recorder, S, Wire

from layers.congestion import CongestionContext, CongestionControlBase, RateSample
from layers.hookspecs import hookimpl
from layers.protocols import TransportError
from layers.wire import ip4
from layers.wire.tcp import TCP_HEADER, TCPOptions

MSS = 1000


def est(settings: dict[str, object] | None = None, **options: Any) -> tuple[Wire, Any, Any, int]:
    w = Wire(PLAIN | (settings or {}))
    conn, proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS), **options)
    return w, conn, proto, synack.seq + 1


def collect(w: Wire, until: float, step: float = 0.05) -> list[Any]:
    out = []
    t = w.now
    while t < until:
        t = min(t + step, until)
        w.run_until(t)
        out += w.sent()
    return out


# --- RFC 6298 --------------------------------------------------------------------------------


def test_rto_backoff_doubles_from_the_floor() -> None:
    w, conn, _proto, us = est()
    conn.write(b"d" * 100)
    t0 = w.now
    w.one()
    segs = collect(w, t0 + 13.0)
    times = [round(s.time - t0, 3) for s in segs]
    assert times == [0.2, 0.6, 1.4, 3.0, 6.2, 12.6]
    assert all(s.seq == us and s.payload == b"d" * 100 for s in segs)
    assert w.counters["RetransSegs"] == 6


def test_rto_is_capped_at_rto_max() -> None:
    w, conn, _proto, _us = est({"tcp.rto_max": 2.0})
    conn.write(b"d")
    t0 = w.now
    w.one()
    times = [round(s.time - t0, 3) for s in collect(w, t0 + 9.0, 0.1)]
    assert times == [0.2, 0.6, 1.4, 3.0, 5.0, 7.0, 9.0]


def test_rtt_samples_set_the_rto() -> None:
    w, conn, _proto, us = est({"tcp.rto_min": 0.5})
    # the handshake gave the first sample (0 s on this link)
    assert conn.rtt.srtt == 0.0 and conn.rtt.rttvar == 0.0
    srtt, rttvar = 0.0, 0.0
    for n, r in enumerate((0.100, 0.200, 0.050, 0.4), start=1):
        conn.write(b"r" * 100)
        w.one()
        w.advance(r)
        w.inject(A, 1001, us + 100 * n)
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
        assert abs(conn.rtt.srtt - srtt) < 1e-9
        assert abs(conn.rtt.rttvar - rttvar) < 1e-9
        assert abs(conn.rtt.rto - max(0.5, srtt + 4 * rttvar)) < 1e-9


def test_karn_no_sample_from_retransmitted_segment() -> None:
    w, conn, _proto, us = est({"tcp.rto_min": 0.01})
    before = conn.rtt.srtt
    conn.write(b"k" * 100)
    w.one()
    w.advance(2.0)  # several retransmissions
    assert w.sent()
    w.inject(A, 1001, us + 100)
    assert conn.rtt.srtt == before
    assert conn.rtt.backoff == 0  # the backoff is undone by new data acknowledged


def test_gives_up_after_retries2_with_etimedout() -> None:
    w, conn, proto, _us = est({"tcp.retries2": 3})
    conn.write(b"x")
    w.one()
    w.advance(60)
    assert len(w.sent()) == 3
    exc = proto.lost
    assert isinstance(exc, TimeoutError) and exc.errno == errno.ETIMEDOUT
    assert conn.state.name == "CLOSED"


def test_user_timeout() -> None:
    w, conn, proto, _us = est(user_timeout=1.0)
    conn.write(b"u")
    t0 = w.now
    w.one()
    w.run_until(t0 + 0.99)
    assert proto.lost == "not lost"
    w.run_until(t0 + 1.01)
    assert isinstance(proto.lost, TimeoutError)


def test_soft_error_reported_instead_of_timeout() -> None:
    w, conn, proto, _us = est({"tcp.retries2": 2})
    conn.write(b"s")
    seg = w.one()
    quote = TCP_HEADER.pack(80, PEER_PORT, seg.seq, 0, 0x5010, 0, 0, 0)
    w.tcp.error(TransportError(errno.EHOSTUNREACH, ip4(US), PEER_I, 6, quote, reporter=1,
                               icmp_type=3, icmp_code=1))
    assert conn.state.name == "ESTABLISHED"  # soft: keep trying
    assert w.counters["SoftErrors"] == 1
    w.advance(60)
    assert isinstance(proto.lost, OSError) and proto.lost.errno == errno.EHOSTUNREACH


# --- fast retransmit and NewReno ------------------------------------------------------------


def flight(w: Wire, conn: Any, n: int) -> list[Any]:
    conn.write(b"".join(bytes([65 + i % 26]) * MSS for i in range(n)))
    return w.sent()


def test_three_duplicate_acks_trigger_fast_retransmit() -> None:
    w, conn, _proto, us = est()
    segs = flight(w, conn, 10)
    assert len(segs) == 10
    # segment 0 lost: the peer acknowledges nothing new, three times
    for _ in range(2):
        w.inject(A, 1001, us)
        w.nothing()
    w.inject(A, 1001, us)
    (rtx,) = w.sent()
    assert rtx.seq == us and rtx.payload == segs[0].payload
    assert conn.recovery.in_recovery
    assert conn.cc.ssthresh == 5 * MSS  # half the flight
    # PRR (RFC 6937), not window inflation: three segments left, one is lost and resent
    assert conn.in_flight() == 7 * MSS
    assert conn.cc.cwnd == 7 * MSS
    assert w.counters["FastRetransmits"] == 1


def test_newreno_partial_ack_retransmits_next_hole_then_full_ack_exits() -> None:
    w, conn, _proto, us = est()
    segs = flight(w, conn, 10)
    # segments 0 and 4 lost
    for _ in range(3):
        w.inject(A, 1001, us)
    (rtx,) = w.sent()
    assert rtx.seq == us
    # more duplicate ACKs inflate the window; new data may go
    for _ in range(5):
        w.inject(A, 1001, us)
    new = w.sent()
    assert all(s.seq >= us + 10 * MSS for s in new)
    # the retransmission arrives: cumulative ACK up to the second hole (partial)
    w.inject(A, 1001, us + 4 * MSS)
    out = w.sent()
    assert out[0].seq == us + 4 * MSS and out[0].payload == segs[4].payload
    assert conn.recovery.in_recovery
    # the second retransmission fills it: a full ACK ends recovery
    w.inject(A, 1001, conn.recovery.recover)
    assert not conn.recovery.in_recovery
    assert conn.cc.cwnd <= conn.cc.ssthresh


def test_no_second_fast_retransmit_for_the_same_window() -> None:
    w, conn, _proto, us = est()
    flight(w, conn, 10)
    for _ in range(3):
        w.inject(A, 1001, us)
    w.sent()
    tcb = conn.get_extra_info("tcp")
    tcb.recovery.in_recovery = False  # as if recovery ended by a timeout
    tcb.recovery.dupacks = 0
    for _ in range(3):
        w.inject(A, 1001, us)
    assert all(s.seq != us for s in w.sent())
    assert w.counters["FastRetransmits"] == 1


def test_rto_resets_to_one_segment_and_goes_back() -> None:
    w, conn, _proto, us = est()
    flight(w, conn, 10)
    w.advance(0.25)
    (rtx,) = w.sent()
    assert rtx.seq == us
    assert conn.cc.cwnd == MSS and conn.cc.ssthresh == 5 * MSS
    w.inject(A, 1001, us + MSS)
    nxt = w.sent()
    # slow start again from the first unacknowledged byte
    assert [s.seq for s in nxt] == [us + MSS, us + 2 * MSS]
    assert w.counters["RTOs"] == 1


def test_sack_recovery_retransmits_only_the_holes() -> None:
    # RFC 6675's DupThresh rules (tcp.recovery=dupack); RACK's own: tests/tcp/test_tcp_rack.py
    w = Wire({"tcp.sack": True, "tcp.timestamps": False, "tcp.recovery": "dupack"})
    conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS, sack_permitted=True))
    us = synack.seq + 1
    segs = flight(w, conn, 10)
    # segments 2 and 5 lost; the peer SACKs what came after
    def sack(*blocks: tuple[int, int]) -> TCPOptions:
        return TCPOptions(sack=tuple((us + a * MSS, us + b * MSS) for a, b in blocks))

    w.inject(A, 1001, us + 2 * MSS)  # segments 0 and 1 arrived
    w.inject(A, 1001, us + 2 * MSS, opts=sack((3, 4)))
    w.inject(A, 1001, us + 2 * MSS, opts=sack((3, 5)))
    w.nothing()
    w.inject(A, 1001, us + 2 * MSS, opts=sack((6, 7), (3, 5)))
    (first,) = w.sent()
    assert first.seq == us + 2 * MSS and first.payload == segs[2].payload
    # PRR (RFC 6937): with ssthresh half the flight, one segment goes per two delivered
    w.inject(A, 1001, us + 2 * MSS, opts=sack((6, 8), (3, 5)))
    w.nothing()
    w.inject(A, 1001, us + 2 * MSS, opts=sack((6, 9), (3, 5)))
    (second,) = w.sent()
    assert second.seq == us + 5 * MSS  # the next hole, without waiting for a partial ACK
    w.inject(A, 1001, us + 2 * MSS, opts=sack((6, 10), (3, 5)))
    w.nothing()  # no hole left below the SACKed data and nothing new to send
    w.inject(A, 1001, us + 10 * MSS)
    assert not conn.recovery.in_recovery


# --- ICMP errors ------------------------------------------------------------------------------


def icmp(w: Wire, seg: Any, err: int, *, mtu: int | None = None, code: int = 3) -> None:
    quote = TCP_HEADER.pack(seg.tcp.sport, seg.tcp.dport, seg.seq, 0, 0x5002, 0, 0, 0)
    w.tcp.error(TransportError(err, ip4(US), ip4(PEER), 6, quote, reporter=ip4(PEER),
                               icmp_type=3, icmp_code=code, mtu=mtu))


def test_port_unreachable_in_syn_sent_is_refused() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    icmp(w, syn, errno.ECONNREFUSED)
    assert isinstance(results[0], ConnectionRefusedError)


def test_host_unreachable_in_syn_sent_fails_the_connect() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    icmp(w, syn, errno.EHOSTUNREACH, code=1)
    assert isinstance(results[0], OSError) and results[0].errno == errno.EHOSTUNREACH


def test_icmp_for_sequence_not_in_flight_is_ignored() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    quote = TCP_HEADER.pack(syn.tcp.sport, 80, (syn.seq + 12345) & 0xFFFFFFFF, 0, 0, 0, 0, 0)
    w.tcp.error(TransportError(errno.ECONNREFUSED, ip4(US), PEER_I, 6, quote, icmp_type=3,
                               icmp_code=3))
    assert results == []
    assert w.counters.drops["icmp_out_of_window"] == 1


def test_port_unreachable_when_established_is_soft() -> None:
    w, conn, _proto, _us = est()
    conn.write(b"x")
    seg = w.one()
    icmp(w, seg, errno.ECONNREFUSED)
    assert conn.state.name == "ESTABLISHED" and conn.soft_error == errno.ECONNREFUSED


def test_fragmentation_needed_lowers_mss_and_resends() -> None:
    w, conn, _proto, us = est()
    conn.write(b"m" * 3000)
    segs = w.sent()
    assert [len(s.payload) for s in segs] == [1000, 1000, 1000]
    icmp(w, segs[0], errno.EMSGSIZE, mtu=576, code=4)
    assert conn.mss == 536
    resent = w.sent()
    assert resent[0].seq == us and len(resent[0].payload) == 536
    assert w.counters["PMTUUpdates"] == 1


# --- keepalive ----------------------------------------------------------------------------


def test_keepalive_probes_then_timeout() -> None:
    w, _conn, proto, us = est({"tcp.keepalive_time": 10.0, "tcp.keepalive_intvl": 2.0,
                              "tcp.keepalive_probes": 3}, keepalive=True)
    t0 = w.now
    probes = collect(w, t0 + 20.0, 0.5)
    assert [round(p.time - t0, 3) for p in probes] == [10.0, 12.0, 14.0]
    assert all(p.seq == us - 1 and p.payload == b"" for p in probes)
    assert isinstance(proto.lost, TimeoutError)


def test_keepalive_answer_keeps_connection() -> None:
    w, conn, _proto, us = est({"tcp.keepalive_time": 10.0, "tcp.keepalive_intvl": 2.0,
                              "tcp.keepalive_probes": 3}, keepalive=True)
    t0 = w.now
    w.run_until(t0 + 10.0)
    assert w.one().seq == us - 1
    w.inject(A, 1001, us)
    w.run_until(t0 + 19.9)
    w.nothing()
    w.run_until(t0 + 20.1)
    assert w.one().seq == us - 1
    assert conn.state.name == "ESTABLISHED"


def test_no_keepalive_unless_asked() -> None:
    w, _conn, _proto, _us = est({"tcp.keepalive_time": 1.0})
    w.advance(100)
    w.nothing()


# --- a congestion control from another plugin ----------------------------------------------


class FixedWindow(CongestionControlBase):
    """A silly algorithm: a constant window of three segments."""

    name = "fixed3"

    def __init__(self, ctx: CongestionContext) -> None:
        super().__init__(ctx)
        self.cwnd = 3 * ctx.mss
        self.calls: list[str] = []

    def on_start(self, mss: int, now: float) -> None:
        self.cwnd = 3 * mss

    def on_ack(self, rs: RateSample) -> None:
        self.calls.append("ack")
        self.cwnd = 3 * rs.mss

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        self.ssthresh = 3 * self.mss

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        self.cwnd = 3 * self.mss

    def on_timeout(self, in_flight: int, now: float) -> None:
        self.cwnd = 3 * self.mss


class FixedPlugin:
    @hookimpl
    def layers_congestion_controls(self) -> dict[str, Any]:
        return {"fixed3": FixedWindow}


def test_congestion_control_from_a_plugin() -> None:
    w = Wire(PLAIN | {"tcp.congestion_control": "fixed3"},
             plugins=["ipv4", "tcp", FixedPlugin()])
    conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS))
    assert isinstance(conn.cc, FixedWindow)
    conn.write(b"c" * 20_000)
    assert len(w.sent()) == 3
    w.inject(A, 1001, synack.seq + 1 + 3 * MSS)
    assert len(w.sent()) == 3 and conn.cc.calls == ["ack"]


def test_congestion_control_per_connection() -> None:
    w = Wire(PLAIN, plugins=["ipv4", "tcp", FixedPlugin()])
    conn = w.tcp.connect(Recorder(), PEER_I, 80, congestion_control="fixed3")
    assert isinstance(conn.cc, FixedWindow)
    conn2 = w.tcp.connect(Recorder(), PEER_I, 80)
    assert conn2.cc.name == "newreno"


def test_syn_flag_constant() -> None:
    assert S == 2


def test_limited_transmit_sends_new_data_on_early_duplicates() -> None:
    w, conn, _proto, us = est()
    flight(w, conn, 12)  # ten go (initial window), two wait
    w.inject(A, 1001, us)
    (first,) = w.sent()
    assert first.seq == us + 10 * MSS  # RFC 3042: one new segment per early dupack
    w.inject(A, 1001, us)
    (second,) = w.sent()
    assert second.seq == us + 11 * MSS
    w.inject(A, 1001, us)
    (rtx,) = w.sent()
    assert rtx.seq == us  # the third is a fast retransmit


def test_ack_with_new_sack_counts_as_duplicate_even_with_data() -> None:
    w = Wire({"tcp.sack": True, "tcp.timestamps": False})
    conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS, sack_permitted=True))
    us = synack.seq + 1
    flight(w, conn, 10)
    seq = 1001
    for k in range(3):
        # the peer is sending too: its ACKs ride on data, and SACK what arrived
        sack = TCPOptions(sack=((us + MSS, us + (2 + k) * MSS),))
        w.inject(A, seq, us, b"d" * 10, opts=sack)
        seq += 10
    segs = w.sent()
    assert any(s.seq == us and len(s.payload) == MSS for s in segs)
    assert conn.recovery.in_recovery


def test_the_handshake_gives_the_first_rtt_sample_with_timestamps_too() -> None:
    # Linux's tcp_synack_rtt_meas: the ACK of a SYN-ACK sent once is timed, timestamps or
    # not, so the first data segment's RTO already follows the path (not the 1 s initial)
    for ts in (None, (77, 0)):
        w = Wire({"tcp.timestamps": ts is not None, "tcp.rto_min": 0.2})
        transport, _proto, _synack = w.accept(
            iss=1000, syn_opts=TCPOptions(mss=1000, timestamp=ts), rtt=0.05)
        conn = transport.conn
        assert conn.ts_ok == (ts is not None)
        assert conn.rtt.srtt is not None and abs(conn.rtt.srtt - 0.05) < 1e-9
        assert abs(conn.rtt.rto - 0.2) < 1e-9  # 0.05 + 4 * 0.025 = 0.15, raised to rto_min


def test_no_handshake_rtt_sample_after_a_retransmitted_synack() -> None:
    w = Wire({"tcp.timestamps": True})
    w.listen(80)
    w.inject(S, 1000, opts=TCPOptions(mss=1000, timestamp=(77, 0)))
    synack = w.one()
    w.advance(1.0)  # the SYN-ACK goes again
    assert w.one().flags == synack.flags
    w.advance(0.05)
    assert synack.opts.timestamp is not None
    w.inject(A, 1001, synack.seq + 1, opts=TCPOptions(timestamp=(78, synack.opts.timestamp[0])))
    conn = w.tcp.conns[next(iter(w.tcp.conns))]
    assert conn.state.name == "ESTABLISHED" and conn.rtt.srtt is None

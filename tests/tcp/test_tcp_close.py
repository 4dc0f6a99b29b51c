"""Closing at segment level: active, passive and simultaneous close, half-close both ways,
TIME-WAIT (2*MSL, FIN retransmission, reuse by a new SYN), FIN-WAIT-2 timeout, abort, and
the RST acceptance rules of RFC 9293 3.10.7 with RFC 5961's challenge ACKs."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from layers_tcp.buffers import NO_SNDBUF
from layers_tcp.sack import NO_SCOREBOARD
from tcp_support import FA, PEER_I, PEER_PORT, PLAIN, RA, SA, US_I, A, F, R, S, Wire

from layers.cli.ss import format_ss
from layers.errors import ConfigurationError
from layers.wire.tcp import TCPOptions

KEY = (US_I, 80, PEER_I, PEER_PORT)


def established(settings: dict[str, Any] | None = None) -> tuple[Wire, Any, Any, int]:
    """A passive connection; returns (wire, conn, proto, our next sequence number)."""
    w = Wire(PLAIN | (settings or {}))
    conn, proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460))
    return w, conn, proto, synack.seq + 1


# --- active close ----------------------------------------------------------------------------


def test_active_close_to_time_wait_and_expiry() -> None:
    w, conn, proto, us = established({"tcp.msl": 5.0})
    conn.close()
    fin = w.one()
    assert fin.flags == FA and fin.seq == us and fin.ack == 1001
    assert conn.state.name == "FIN_WAIT_1"
    w.inject(A, 1001, us + 1)
    assert conn.state.name == "FIN_WAIT_2"
    w.settle()
    assert proto.lost is None
    w.inject(FA, 1001, us + 1)
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    assert conn.state.name == "TIME_WAIT"
    t = w.now
    w.run_until(t + 9.99)
    assert KEY in w.tcp.conns
    w.run_until(t + 10.0)  # 2 * MSL
    assert KEY not in w.tcp.conns
    assert w.counters["CurrEstab"] == 0


def test_time_wait_acks_retransmitted_fin_and_restarts() -> None:
    w, conn, _, us = established({"tcp.msl": 5.0})
    conn.close()
    w.one()
    w.inject(FA, 1001, us + 1)
    w.one()
    w.advance(8.0)
    w.inject(FA, 1001, us + 1)  # our ACK was lost
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    w.advance(9.0)
    assert KEY in w.tcp.conns  # the 2*MSL restarted at the retransmission
    w.advance(1.0)
    assert KEY not in w.tcp.conns


def test_new_syn_reuses_time_wait() -> None:
    w, conn, _, us = established({"tcp.msl": 30.0})
    conn.close()
    w.one()
    w.inject(FA, 1001, us + 1)
    w.one()
    # an old duplicate SYN (sequence not beyond the old connection) is not a new one
    w.inject(S, 500)
    assert w.one().flags == A
    w.inject(S, 50_000)
    synack = w.one()
    assert synack.flags == SA and synack.ack == 50_001
    assert w.counters["TWRecycled"] == 1


def _close_actively(w: Wire, sport: int) -> tuple[Any, Any, int]:
    """A passive connection from ``sport`` that we close first, through FIN-WAIT-1 (our FIN
    and the peer's together with the ACK of ours); the ACK we owe is checked."""
    conn, proto, synack = w.accept(iss=1000, sport=sport)
    us = synack.seq + 1
    conn.close()
    assert w.one().flags == FA
    w.inject(FA, 1001, us + 1, sport=sport)
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    return conn, proto, us


def test_max_tw_buckets_caps_time_wait() -> None:
    """Linux's tcp_max_tw_buckets: a connection that would enter TIME-WAIT while the cap is
    reached sends the ACK it owes and ends (TCPTimeWaitOverflow); earlier ones stay."""
    w = Wire(PLAIN | {"tcp.max_tw_buckets": 2, "tcp.msl": 5.0})
    ports = [PEER_PORT, PEER_PORT + 1, PEER_PORT + 2]
    for port in ports[:2]:
        conn, _, _ = _close_actively(w, port)
        assert conn.state.name == "TIME_WAIT"
    assert w.counters["TCPTimeWaitOverflow"] == 0
    conn, proto, us = _close_actively(w, ports[2])
    assert conn.state.name == "CLOSED"
    assert (US_I, 80, PEER_I, ports[2]) not in w.tcp.conns
    assert w.counters["TCPTimeWaitOverflow"] == 1
    w.settle()
    assert proto.lost is None  # an orderly close for the application all the same
    assert w.tcp.tw_count == 2
    # the two in TIME-WAIT still ACK a retransmitted FIN
    for port in ports[:2]:
        assert (US_I, 80, PEER_I, port) in w.tcp.conns
        w.inject(FA, 1001, us + 1, sport=port)
        ack = w.one()
        assert ack.flags == A and ack.ack == 1002
    # the third is gone: its retransmitted FIN finds no connection (the listener resets it)
    w.inject(FA, 1001, us + 1, sport=ports[2])
    assert w.one().flags & R
    # once TIME-WAIT ends, the buckets are free again
    w.advance(10.0)
    assert w.tcp.tw_count == 0 and not w.tcp.conns
    conn, _, _ = _close_actively(w, ports[2])
    assert conn.state.name == "TIME_WAIT"
    assert w.counters["TCPTimeWaitOverflow"] == 1


def test_max_tw_buckets_frees_a_bucket_on_reset_and_reuse() -> None:
    w = Wire(PLAIN | {"tcp.max_tw_buckets": 1})
    _close_actively(w, PEER_PORT)
    assert w.tcp.tw_count == 1
    w.inject(R, 1002, sport=PEER_PORT)  # RST at RCV.NXT ends TIME-WAIT (Linux's default)
    assert w.tcp.tw_count == 0
    conn, _, _ = _close_actively(w, PEER_PORT)
    assert conn.state.name == "TIME_WAIT"
    w.inject(S, 50_000, sport=PEER_PORT)  # a new SYN reuses it (RFC 6191)
    assert w.one().flags == SA
    assert w.tcp.tw_count == 0
    assert w.counters["TWRecycled"] == 1 and w.counters["TCPTimeWaitOverflow"] == 0


def test_max_tw_buckets_zero_keeps_no_time_wait() -> None:
    w = Wire(PLAIN | {"tcp.max_tw_buckets": 0})
    conn, _, _ = _close_actively(w, PEER_PORT)
    assert conn.state.name == "CLOSED" and not w.tcp.conns
    assert w.counters["TCPTimeWaitOverflow"] == 1


def test_max_tw_buckets_in_closing() -> None:
    """A simultaneous close reaches TIME-WAIT from CLOSING: the cap applies there too."""
    w = Wire(PLAIN | {"tcp.max_tw_buckets": 0})
    conn, _, synack = w.accept(iss=1000)
    us = synack.seq + 1
    conn.close()
    w.one()
    w.inject(FA, 1001, us)
    assert w.one().ack == 1002
    assert conn.state.name == "CLOSING"
    w.inject(A, 1002, us + 1)
    assert conn.state.name == "CLOSED" and not w.tcp.conns
    assert w.counters["TCPTimeWaitOverflow"] == 1


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_max_tw_buckets_bad_values(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"tcp\.max_tw_buckets"):
        Wire({"tcp.max_tw_buckets": value})


def test_time_wait_with_timestamps_and_sack_keeps_working_once_released() -> None:
    """TIME-WAIT releases what sending and loss recovery keep: with timestamps, SACK and
    RACK-TLP it still ACKs a retransmitted FIN, applies PAWS, ignores an acceptable ACK
    (and its SACK blocks), answers an ACK of unsent data, reports itself, and is reused by
    a newer SYN."""
    w = Wire({"tcp.msl": 5.0})
    syn_opts = TCPOptions(mss=1460, sack_permitted=True, timestamp=(100, 0), wscale=7)
    conn, _, synack = w.accept(iss=1000, syn_opts=syn_opts)
    assert synack.opts.timestamp is not None
    our_ts = synack.opts.timestamp[0]
    us = synack.seq + 1
    conn.write(b"x" * 2896)
    data = w.sent()
    assert sum(len(d.payload) for d in data) == 2896
    w.inject(A, 1001, us + 2896, opts=TCPOptions(timestamp=(101, our_ts)))
    conn.close()
    fin = w.one()
    assert fin.flags == FA and fin.seq == us + 2896
    w.inject(FA, 1001, us + 2897, opts=TCPOptions(timestamp=(102, our_ts)))
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    tw = w.tcp.conns[KEY]
    assert tw.state.name == "TIME_WAIT"
    # a retransmitted FIN: ACKed, echoing its timestamp's TS.Recent (102: not in window)
    w.advance(3.0)
    w.inject(FA, 1001, us + 2897, opts=TCPOptions(timestamp=(103, our_ts)))
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    assert ack.opts.timestamp is not None and ack.opts.timestamp[1] == 102
    # PAWS: a segment with an older timestamp is dropped (and ACKed: it has a FIN)
    paws = w.counters["PAWSEstab"]
    w.inject(FA, 1001, us + 2897, opts=TCPOptions(timestamp=(50, our_ts)))
    assert w.one().flags == A
    assert w.counters["PAWSEstab"] == paws + 1
    # an acceptable bare ACK with SACK blocks changes nothing and is not answered
    w.inject(A, 1002, us + 2897, opts=TCPOptions(timestamp=(104, our_ts),
                                                 sack=((us + 100, us + 200),)))
    w.nothing()
    # an ACK of data never sent is answered with an ACK
    w.inject(A, 1002, us + 9000, opts=TCPOptions(timestamp=(105, our_ts)))
    assert w.one().flags == A
    assert tw.state.name == "TIME_WAIT" and KEY in w.tcp.conns
    # what TIME-WAIT released is shared and stays empty
    assert tw.sb is NO_SCOREBOARD and not NO_SCOREBOARD.ranges and not tw.rate.records
    assert tw.sndbuf is NO_SNDBUF and NO_SNDBUF.size == 0 and tw.recovery.rack is None
    d = tw.describe()
    assert d["state"] == "TIME_WAIT" and d["send_q"] == 0 and d["in_flight"] == 0
    assert d["delivered"] >= 2896 and d["lost"] == 0
    assert "TIME-WAIT" in format_ss(w.tcp.report(), info=True)
    # the 2*MSL restarted at the retransmitted FIN (t+3 s): still there at t+7.9 s
    w.advance(4.9)
    assert KEY in w.tcp.conns
    # a newer SYN (newer timestamp) reuses the 4-tuple
    w.inject(S, 1001, opts=TCPOptions(mss=1460, sack_permitted=True, timestamp=(200, 0),
                                      wscale=7))
    assert w.one().flags == SA
    assert w.counters["TWRecycled"] == 1 and w.tcp.tw_count == 0


def test_time_wait_lets_the_application_go_once_told() -> None:
    """Once on_closed is delivered, TIME-WAIT keeps no reference to the transport (nor so
    to the protocol), and the transport's calls still behave."""
    w, conn, proto, us = established({"tcp.msl": 5.0})
    conn.close()
    w.one()
    w.inject(FA, 1001, us + 1)
    w.one()
    w.settle()
    tw = w.tcp.conns[KEY]
    assert tw.state.name == "TIME_WAIT" and proto.lost is None
    assert tw.app is None
    assert conn.is_closing()
    conn.close()
    conn.write(b"late")  # dropped: the connection is closing
    w.settle()
    w.nothing()
    w.inject(FA, 1001, us + 1)  # and TIME-WAIT goes on: a retransmitted FIN is ACKed
    assert w.one().ack == 1002
    assert proto.kinds().count("lost") == 1
    conn.abort()  # ends TIME-WAIT, silently
    w.settle()
    w.nothing()
    assert KEY not in w.tcp.conns and w.tcp.tw_count == 0


def test_time_wait_keeps_the_application_while_data_is_unread() -> None:
    """After a half-close, an application that paused reading is told of the end only once
    it has read what is left: TIME-WAIT keeps it (and the unread data) until then."""
    w, conn, proto, us = established({"tcp.msl": 5.0})
    conn.pause_reading()
    conn.write_eof()
    assert w.one().flags == FA
    w.inject(FA, 1001, us + 1, b"unread")
    assert w.one().ack == 1008
    w.settle()
    tw = w.tcp.conns[KEY]
    assert tw.state.name == "TIME_WAIT" and tw.app is not None
    assert "lost" not in proto.kinds()
    conn.resume_reading()
    w.settle()
    assert bytes(proto.data) == b"unread"
    assert proto.kinds()[-2:] == ["eof", "lost"] and proto.lost is None
    assert tw.app is None and tw.state.name == "TIME_WAIT"


def test_fin_in_fin_wait_1_is_simultaneous_close() -> None:
    w, conn, proto, us = established({"tcp.msl": 1.0})
    conn.close()
    w.one()
    w.inject(FA, 1001, us)  # the peer's FIN, not acknowledging ours
    ack = w.one()
    assert ack.ack == 1002
    assert conn.state.name == "CLOSING"
    w.inject(A, 1002, us + 1)
    assert conn.state.name == "TIME_WAIT"
    w.settle()
    assert proto.lost is None
    w.advance(2.0)
    assert KEY not in w.tcp.conns


def test_fin_ack_in_fin_wait_1_goes_straight_to_time_wait() -> None:
    w, conn, _, us = established()
    conn.close()
    w.one()
    w.inject(FA, 1001, us + 1)
    assert conn.state.name == "TIME_WAIT"


def test_fin_retransmitted_until_acked() -> None:
    w, conn, _, us = established()
    conn.close()
    t0 = w.now
    w.one()
    w.run_until(t0 + 3.5)
    again = [(round(s.time - t0, 3), s.flags, s.seq) for s in w.sent()]
    # the handshake measured an RTT of 0: RTO is at its 200 ms floor, then doubles
    assert again == [(0.2, FA, us), (0.6, FA, us), (1.4, FA, us), (3.0, FA, us)]


def test_fin_wait_2_times_out_after_close() -> None:
    w, conn, _, us = established({"tcp.fin_timeout": 10.0})
    conn.close()
    w.one()
    w.inject(A, 1001, us + 1)
    w.advance(9.0)
    assert KEY in w.tcp.conns
    w.advance(1.5)
    assert KEY not in w.tcp.conns


# --- passive close -----------------------------------------------------------------------


def test_passive_close() -> None:
    w, conn, proto, us = established()
    w.inject(FA, 1001, us)
    ack = w.one()
    assert ack.flags == A and ack.ack == 1002
    assert conn.state.name == "CLOSE_WAIT"
    assert proto.kinds() == ["made", "eof"]
    conn.close()
    fin = w.one()
    assert fin.flags == FA and fin.seq == us
    assert conn.state.name == "LAST_ACK"
    w.inject(A, 1002, us + 1)
    assert KEY not in w.tcp.conns
    assert proto.kinds() == ["made", "eof", "lost"]
    assert proto.lost is None


def test_passive_close_last_ack_ends_without_ack_processing_unless_observed() -> None:
    """The ACK of our FIN in LAST-ACK ends the connection without _rx_ack's RTT, rate and
    congestion-control work (nobody would read them); a telemetry subscriber still gets the
    sample of that ACK, as every ACK before it."""
    for observed in (False, True):
        w, conn, proto, us = established()
        conn.write(b"x" * 100)
        w.one()
        samples: list[Any] = []
        if observed:
            conn.subscribe(samples.append)
        w.inject(FA, 1001, us)  # acknowledges nothing of ours yet
        conn.close()
        fin = w.sent()[-1]
        assert fin.flags & F and fin.seq == us + 100
        assert conn.state.name == "LAST_ACK"
        rtt_before = conn.rtt.srtt
        w.advance(0.05)
        w.inject(A, 1002, us + 101)  # our data and FIN
        assert KEY not in w.tcp.conns and conn.state.name == "CLOSED"
        assert conn.snd_una == conn.snd_max
        assert proto.kinds() == ["made", "eof", "lost"] and proto.lost is None
        if observed:
            assert samples and samples[-1].send_q == 0 and conn.rtt.srtt is not None
        else:
            assert samples == [] and conn.rtt.srtt == rtt_before


def test_last_ack_with_the_fin_still_queued_takes_the_ack_of_data() -> None:
    """In LAST-ACK with data and our FIN still waiting for the peer's window, an ACK of all
    that was sent acknowledges data only: the send buffer moves on, the rest and the FIN go
    out, and the connection ends with the ACK of the FIN."""
    w = Wire(PLAIN)
    conn, proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1000), wnd=2000)
    us = synack.seq + 1
    w.inject(FA, 1001, us, wnd=2000)
    w.one()
    conn.write(b"a" * 3000)
    conn.close()
    assert conn.state.name == "LAST_ACK"
    first = w.sent()
    assert sum(len(s.payload) for s in first) == 2000 and not any(s.flags & F for s in first)
    w.inject(A, 1002, us + 2000, wnd=2000)
    rest = w.sent()
    assert [s.seq for s in rest] == [us + 2000] and len(rest[0].payload) == 1000
    assert rest[-1].flags & F
    assert KEY in w.tcp.conns and conn.state.name == "LAST_ACK"
    assert conn.sndbuf.size == 1000  # the acknowledged 2000 bytes left the buffer
    w.inject(A, 1002, us + 3001, wnd=2000)
    assert KEY not in w.tcp.conns
    assert proto.kinds() == ["made", "eof", "lost"] and proto.lost is None


def test_last_ack_with_timestamps_paws_drops_an_old_ack_of_our_fin() -> None:
    """LAST-ACK's last ACK with timestamps: one PAWS rejects (older than TS.Recent) leaves
    the connection in LAST-ACK; the next in order ends it, and so does one without the option
    (PAWS judges only segments that carry a timestamp, as Linux's)."""
    w = Wire({"tcp.window_scaling": False, "tcp.sack": False})
    conn, proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460, timestamp=(500, 0)))
    us = synack.seq + 1
    assert synack.opts.timestamp is not None
    ours = synack.opts.timestamp[0]
    w.inject(FA, 1001, us, opts=TCPOptions(timestamp=(600, ours)))
    conn.close()
    fin = w.sent()[-1]
    assert fin.flags & F and conn.state.name == "LAST_ACK"
    w.inject(A, 1002, us + 1, opts=TCPOptions(timestamp=(400, ours)))  # PAWS: too old
    assert KEY in w.tcp.conns and conn.state.name == "LAST_ACK"
    w.inject(A, 1002, us + 1, opts=TCPOptions(timestamp=(601, ours)))
    assert KEY not in w.tcp.conns and conn.state.name == "CLOSED"
    assert proto.kinds() == ["made", "eof", "lost"] and proto.lost is None
    w2 = Wire({"tcp.window_scaling": False, "tcp.sack": False})
    conn2, _, synack2 = w2.accept(iss=1000, syn_opts=TCPOptions(mss=1460, timestamp=(500, 0)))
    w2.inject(FA, 1001, synack2.seq + 1, opts=TCPOptions(timestamp=(600, ours)))
    conn2.close()
    w2.inject(A, 1002, synack2.seq + 2)  # without the option they agreed on
    assert KEY not in w2.tcp.conns and conn2.state.name == "CLOSED"


def test_eof_received_false_closes_the_transport() -> None:
    w, conn, proto, us = established()
    proto.keep_open = False
    w.inject(FA, 1001, us)
    segs = w.sent()
    # the FIN goes out with (or right after) the ACK of theirs
    assert segs[-1].flags & F and segs[-1].ack == 1002
    assert conn.state.name == "LAST_ACK"


def test_fin_out_of_order_waits_for_the_data_before_it() -> None:
    w, conn, proto, us = established()
    w.inject(FA, 1006, us)  # FIN after 5 bytes we have not seen
    assert w.one().ack == 1001
    assert conn.state.name == "ESTABLISHED"
    w.inject(A, 1001, us, b"hello")
    assert conn.state.name == "CLOSE_WAIT"
    assert proto.kinds() == ["made", "data", "eof"]
    assert w.sent()[-1].ack == 1007


# --- half-close --------------------------------------------------------------------------


def test_half_close_we_finish_sending_and_keep_receiving() -> None:
    w, conn, proto, us = established()
    assert conn.can_write_eof()
    conn.write(b"request")
    conn.write_eof()
    segs = w.sent()
    assert b"".join(s.payload for s in segs) == b"request"
    assert segs[-1].flags & F
    fin_seq = us + 7
    w.inject(A, 1001, fin_seq + 1)
    assert conn.state.name == "FIN_WAIT_2"
    # the peer still sends, and we still deliver
    w.inject(A, 1001, fin_seq + 1, b"response part 1")
    w.inject(FA, 1016, fin_seq + 1, b"+2")
    assert bytes(proto.data) == b"response part 1+2"
    assert conn.state.name == "TIME_WAIT"
    w.settle()
    assert proto.kinds()[-2:] == ["eof", "lost"]
    import pytest

    with pytest.raises(RuntimeError):
        conn.write(b"more")


def test_half_close_peer_finishes_and_we_keep_sending() -> None:
    w, conn, proto, us = established()
    w.inject(FA, 1001, us, b"question")
    w.sent()
    assert proto.kinds() == ["made", "data", "eof"]
    conn.write(b"answer" * 100)
    segs = w.sent()
    assert b"".join(s.payload for s in segs) == b"answer" * 100
    assert all(s.ack == 1010 for s in segs)
    conn.write_eof()
    fin = w.one()
    assert fin.flags == FA and fin.seq == us + 600
    w.inject(A, 1010, us + 601)
    assert KEY not in w.tcp.conns
    w.settle()
    assert proto.lost is None


# --- close with unread or late data ---------------------------------------------------------


def test_close_with_unread_data_resets() -> None:
    w, conn, _proto, us = established()
    conn.pause_reading()
    w.inject(A, 1001, us, b"unread")
    w.advance(0.1)
    w.sent()
    conn.close()
    rst = w.one()
    assert rst.flags & R and rst.seq == us
    assert KEY not in w.tcp.conns
    assert w.counters["AbortOnClose"] == 1


def test_data_after_close_is_answered_with_reset() -> None:
    w, conn, _proto, us = established()
    conn.close()
    w.one()
    w.inject(A, 1001, us + 1, b"too late")
    rst = w.one()
    assert rst.flags & R
    assert KEY not in w.tcp.conns
    assert w.counters["AbortOnData"] == 1


def test_abort_sends_rst_and_reports_lost() -> None:
    w, conn, proto, us = established()
    conn.write(b"pending")
    w.sent()
    conn.abort()
    rst = w.one()
    assert rst.flags == RA and rst.seq == us + 7
    w.settle()
    assert proto.kinds() == ["made", "lost"]
    assert proto.lost is None
    assert conn.is_closing()


# --- RST acceptance (RFC 9293 3.10.7.4, RFC 5961 3) -------------------------------------


def test_rst_at_rcv_nxt_resets_connection() -> None:
    w, _conn, proto, _us = established()
    w.inject(R, 1001)
    w.nothing()
    assert KEY not in w.tcp.conns
    exc = proto.lost
    assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
    assert w.counters["EstabResets"] == 1


def test_rst_in_window_gets_challenge_ack() -> None:
    w, _conn, proto, us = established()
    w.inject(R, 1500)
    ack = w.one()
    assert ack.flags == A and ack.seq == us and ack.ack == 1001
    assert KEY in w.tcp.conns and proto.lost == "not lost"
    assert w.counters["ChallengeACKs"] == 1


def test_rst_out_of_window_is_ignored() -> None:
    w, _conn, _proto, _us = established()
    w.inject(R, 1001 + 10_000_000)
    w.inject(R, 900)
    w.nothing()
    assert KEY in w.tcp.conns
    assert w.counters.drops["rst_out_of_window"] == 2


def test_syn_in_established_gets_challenge_ack() -> None:
    w, _conn, _proto, _us = established()
    w.inject(S, 1200)
    ack = w.one()
    assert ack.flags == A and ack.ack == 1001
    assert KEY in w.tcp.conns


def test_challenge_acks_are_rate_limited() -> None:
    w, _conn, _proto, _us = established({"tcp.challenge_ack_limit": 3})
    for i in range(5):
        w.inject(R, 1100 + i)
    assert len(w.sent()) == 3
    assert w.counters["ChallengeACKsLimited"] == 2
    w.advance(1.0)
    w.inject(R, 1100)
    assert len(w.sent()) == 1


def test_rst_in_time_wait_closes_it() -> None:
    w, conn, _, us = established()
    conn.close()
    w.one()
    w.inject(FA, 1001, us + 1)
    w.one()
    w.inject(R, 1002)
    assert KEY not in w.tcp.conns


def test_ack_for_unsent_data_is_answered_and_dropped() -> None:
    w, _conn, proto, us = established()
    w.inject(A, 1001, us + 5000, b"data")
    ack = w.one()
    assert ack.ack == 1001  # the data was not taken
    assert proto.kinds() == ["made"]
    assert w.counters.drops["ack_unsent"] == 1


def test_ack_too_old_gets_challenge() -> None:
    w, _conn, _proto, us = established()
    w.inject(A, 1001, us - 200_000, b"data")
    assert w.one().ack == 1001
    assert w.counters.drops["ack_too_old"] == 1


def test_segment_without_ack_is_dropped() -> None:
    w, _conn, proto, _us = established()
    w.inject(0, 1001, 0, b"noack")
    w.nothing()
    assert proto.kinds() == ["made"]


def test_out_of_window_data_gets_duplicate_ack() -> None:
    w, _conn, _proto, us = established()
    w.inject(A, 1001 - 100, us, b"x" * 50)  # all old
    ack = w.one()
    assert ack.ack == 1001
    # pure ACKs out of window are answered at most every 0.5 s (ACK-loop guard)
    w.advance(0.6)
    w.inject(A, 5_000_000, us)
    w.inject(A, 5_000_000, us)
    assert len(w.sent()) == 1
    w.advance(0.6)
    w.inject(A, 5_000_000, us)
    assert len(w.sent()) == 1


def test_rst_ack_from_closed_peer_to_syn_sent() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    from tcp_support import Recorder

    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    w.inject(RA, 0, syn.seq + 1, sport=80, dport=syn.tcp.sport)
    assert isinstance(results[0], ConnectionRefusedError)


def test_connection_lost_waits_until_paused_data_is_read() -> None:
    w, conn, proto, us = established()
    conn.pause_reading()
    w.inject(A, 1001, us, b"unread data")
    w.inject(FA, 1012, us)
    w.sent()
    conn.write_eof()
    fin = w.one()
    w.inject(A, 1013, fin.seq + 1)
    assert KEY not in w.tcp.conns  # CLOSED on the wire...
    w.settle()
    assert proto.kinds() == ["made"]
    conn.resume_reading()
    w.settle()
    # ...but the application reads everything before it hears of it
    assert proto.kinds() == ["made", "data", "eof", "lost"]
    assert bytes(proto.data) == b"unread data"

"""Data transfer at segment level: delayed ACKs, Nagle, out-of-order and overlapping
delivery, SACK blocks, receive window and window updates, zero-window probing, sender SWS
avoidance, timestamps/PAWS, MSS, and write-buffer back-pressure."""

from __future__ import annotations

from typing import Any

from tcp_support import FA, PA, PLAIN, A, F, P, Wire

from layers.wire.tcp import TCPOptions

MSS = 1000


def est(settings: dict[str, Any] | None = None, *, wnd: int = 65535,
        syn_opts: TCPOptions | None = None, **options: Any) -> tuple[Wire, Any, Any, int]:
    w = Wire(PLAIN | (settings or {}))
    conn, proto, synack = w.accept(iss=1000, syn_opts=syn_opts or TCPOptions(mss=MSS), wnd=wnd,
                                   **options)
    return w, conn, proto, synack.seq + 1


# --- receiving: ACK policy -------------------------------------------------------------------


def test_single_segment_ack_is_delayed_40ms() -> None:
    w, _conn, proto, us = est()
    t0 = w.now
    w.inject(PA, 1001, us, b"x" * 100)
    assert proto.data == b"x" * 100
    w.nothing()
    w.run_until(t0 + 0.039)
    w.nothing()
    w.run_until(t0 + 0.05)
    ack = w.one()
    assert ack.ack == 1101 and round(ack.time - t0, 3) == 0.04
    assert w.counters["DelayedACKs"] == 1


def test_every_second_full_segment_is_acked_at_once() -> None:
    w, _conn, _proto, us = est()
    w.inject(A, 1001, us, b"a" * MSS)
    w.nothing()
    w.inject(A, 1001 + MSS, us, b"b" * MSS)
    ack = w.one()
    assert ack.ack == 1001 + 2 * MSS


def test_a_burst_is_delivered_once_at_its_end_before_its_ack() -> None:
    # frames handed over together (no poll between them): the first segment goes up at
    # once, the rest in one piece when the burst ends, then one ACK with the window open
    w, _conn, proto, us = est()
    settle = w.settle
    w.settle = lambda: None  # type: ignore[method-assign]
    for i in range(4):
        w.inject(A, 1001 + i * MSS, us, bytes([97 + i]) * MSS)
    w.settle = settle  # type: ignore[method-assign]
    assert [len(d) for k, d in proto.events if k == "data"] == [MSS]
    w.nothing()
    settle()
    assert [len(d) for k, d in proto.events if k == "data"] == [MSS, 3 * MSS]
    assert all(type(d) is bytes for k, d in proto.events if k == "data")
    assert bytes(proto.data) == b"a" * MSS + b"b" * MSS + b"c" * MSS + b"d" * MSS
    ack = w.one()
    assert ack.ack == 1001 + 4 * MSS and ack.wnd == 65535


def test_large_segment_beyond_mss_is_accepted_and_acked() -> None:
    # a TSO/GRO peer hands over 64 KiB at once; take it whole
    w, _conn, proto, us = est()
    big = bytes(range(256)) * 200
    w.inject(A, 1001, us, big)
    assert proto.data == big
    assert w.one().ack == 1001 + len(big)


def test_reply_piggybacks_the_ack() -> None:
    w, _conn, proto, us = est()
    proto.echo = True
    w.inject(PA, 1001, us, b"ping")
    seg = w.one()
    assert seg.payload == b"ping" and seg.ack == 1005 and seg.flags == PA
    w.advance(0.1)
    w.nothing()  # no separate delayed ACK


def test_out_of_order_is_held_and_delivered_in_order() -> None:
    w, _conn, proto, us = est()
    w.inject(A, 1011, us, b"BBBBBBBBBB")
    assert w.one().ack == 1001  # immediate duplicate ACK
    w.inject(A, 1031, us, b"DDDDDDDDDD")
    assert w.one().ack == 1001
    assert proto.data == b""
    w.inject(A, 1001, us, b"AAAAAAAAAA")
    assert proto.data == b"AAAAAAAAAABBBBBBBBBB"
    assert w.one().ack == 1021  # a hole filled: ACK at once
    w.inject(A, 1021, us, b"CCCCCCCCCC")
    assert proto.data.endswith(b"CCCCCCCCCCDDDDDDDDDD")
    assert w.one().ack == 1041


def test_overlapping_segments_deliver_each_byte_once() -> None:
    w, _conn, proto, us = est()
    data = bytes(range(200))
    w.inject(A, 1001 + 50, us, data[50:120])
    w.inject(A, 1001 + 100, us, data[100:180])
    w.inject(A, 1001 + 30, us, data[30:60])
    w.inject(A, 1001 + 0, us, data[0:40])
    w.inject(A, 1001 + 170, us, data[170:200])
    w.inject(A, 1001 + 10, us, data[10:190])  # all duplicate by now
    assert bytes(proto.data) == data
    w.advance(0.1)
    assert w.sent()[-1].ack == 1201


def test_retransmission_overlapping_rcv_nxt_is_trimmed() -> None:
    w, _conn, proto, us = est()
    w.inject(A, 1001, us, b"hello ")
    w.inject(A, 1004, us, b"lo world")  # starts before rcv_nxt
    assert bytes(proto.data) == b"hello world"


def test_out_of_order_queue_is_bounded() -> None:
    w, conn, _proto, us = est({"tcp.ooo_max_blocks": 3})
    for i in range(5):
        w.inject(A, 1001 + 10 + 20 * i, us, b"z" * 5)
    assert w.counters.drops["ooo_overflow"] == 2
    assert len(conn.ooo) == 3


def test_sack_blocks_describe_the_queue() -> None:
    w = Wire({"tcp.sack": True, "tcp.timestamps": False})
    _conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS, sack_permitted=True))
    us = synack.seq + 1
    w.inject(A, 1101, us, b"b" * 100)
    first = w.one()
    assert first.ack == 1001 and first.opts.sack == ((1101, 1201),)
    w.inject(A, 1301, us, b"d" * 100)
    second = w.one()
    # the most recently changed block first (RFC 2018 4)
    assert second.opts.sack == ((1301, 1401), (1101, 1201))
    w.inject(A, 1001, us, b"a" * 100)
    third = w.one()
    assert third.ack == 1201 and third.opts.sack == ((1301, 1401),)


# --- receive window ------------------------------------------------------------------------


def test_paused_reading_fills_the_window_and_resume_opens_it() -> None:
    w, conn, proto, us = est(rcvbuf=4000)
    conn.pause_reading()
    seq = 1001
    for _ in range(4):
        w.inject(A, seq, us, b"q" * MSS)
        seq += MSS
    segs = w.sent()
    assert segs[-1].ack == 5001 and segs[-1].wnd == 0
    assert proto.data == b""
    # beyond the window: not accepted, answered with an ACK showing the zero window
    w.inject(A, 5001, us, b"r" * 10)
    zero = w.one()
    assert zero.ack == 5001 and zero.wnd == 0
    conn.resume_reading()
    w.settle()
    assert len(proto.data) == 4000
    update = w.one()
    assert update.ack == 5001 and update.wnd == 4000
    assert w.counters["WindowUpdates"] == 1


def test_receiver_sws_avoidance_does_not_advertise_tiny_windows() -> None:
    w, conn, _proto, us = est(rcvbuf=4000)
    conn.pause_reading()
    w.inject(A, 1001, us, b"q" * 3500)
    ack = w.one()
    assert ack.wnd == 500
    conn.resume_reading()
    w.settle()
    # 3500 bytes freed: worth a window update
    assert w.one().wnd == 4000


def test_no_window_update_while_more_than_half_the_window_is_open() -> None:
    # Linux's tcp_cleanup_rbuf: a reader that frees room while the peer still has more than
    # half the buffer open sends nothing; once the open window is at most half and the new
    # one at least twice it, one update
    w, conn, _proto, us = est(rcvbuf=8000)
    conn.pause_reading()
    w.inject(A, 1001, us, b"q" * 3000)
    assert w.one().wnd == 5000
    conn.resume_reading()
    w.settle()
    assert w.sent() == []
    assert w.counters["WindowUpdates"] == 0
    conn.pause_reading()
    w.inject(A, 4001, us, b"q" * 5000)
    assert w.one().wnd == 3000
    conn.resume_reading()
    w.settle()
    update = w.one()
    assert update.ack == 9001 and update.wnd == 8000
    assert w.counters["WindowUpdates"] == 1


def test_window_scaling_shifts_the_advertised_window() -> None:
    w = Wire({"tcp.timestamps": False, "tcp.rcvbuf": 1 << 20})
    _conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=MSS, wscale=7))
    assert synack.opts.wscale == 5  # 1 MiB needs a shift of 5
    us = synack.seq + 1
    w.inject(PA, 1001, us, b"x")
    w.advance(0.1)
    assert w.one().wnd == (1 << 20) >> 5


# --- sending -----------------------------------------------------------------------------


def test_nagle_holds_small_segments_while_data_is_unacked() -> None:
    w, conn, _proto, us = est()
    conn.write(b"a")
    assert w.one().payload == b"a"
    conn.write(b"b")
    conn.write(b"c")
    w.nothing()
    w.inject(A, 1001, us + 1)
    seg = w.one()
    assert seg.payload == b"bc" and seg.seq == us + 1


def test_nodelay_sends_small_segments_at_once() -> None:
    w, conn, _proto, _us = est(nodelay=True)
    conn.write(b"a")
    conn.write(b"b")
    assert [s.payload for s in w.sent()] == [b"a", b"b"]


def test_full_segments_are_not_held_by_nagle() -> None:
    w, conn, _proto, _us = est()
    conn.write(b"a")
    w.one()
    conn.write(b"x" * (MSS + 10))
    segs = w.sent()
    assert [len(s.payload) for s in segs] == [MSS]
    assert not segs[0].flags & P  # more follows


def test_psh_on_the_last_segment_of_a_write() -> None:
    w, conn, _proto, _us = est(nodelay=True)
    conn.write(b"y" * (2 * MSS + 5))
    segs = w.sent()
    assert [len(s.payload) for s in segs] == [MSS, MSS, 5]
    assert [bool(s.flags & P) for s in segs] == [False, False, True]


def test_send_respects_peer_window_and_mss() -> None:
    w, conn, _proto, us = est(wnd=2500)
    conn.write(b"w" * 10_000)
    segs = w.sent()
    assert [len(s.payload) for s in segs] == [1000, 1000]  # 500 left: SWS avoidance waits
    w.inject(A, 1001, us + 2000, wnd=2500)
    segs = w.sent()
    assert [len(s.payload) for s in segs] == [1000, 1000]


def test_initial_window_is_ten_segments() -> None:
    w, conn, _proto, _us = est()
    conn.write(b"i" * 50_000)
    assert len(w.sent()) == 10


def test_slow_start_grows_the_window() -> None:
    w, conn, _proto, us = est()
    conn.write(b"s" * 100_000)
    first = w.sent()
    acked = us
    for s in first:
        acked = s.seq + len(s.payload)
        w.inject(A, 1001, acked)
    second = w.sent()
    assert len(first) == 10 and len(second) == 20


def test_zero_window_probes_back_off_and_window_reopens() -> None:
    w, conn, _proto, us = est()
    conn.write(b"z" * 1000)
    w.one()
    w.inject(A, 1001, us + 1000, wnd=0)
    conn.write(b"after")
    w.nothing()
    t0 = w.now
    w.run_until(t0 + 3.5)
    probes = w.sent()
    # seq = SND.UNA - 1, no data: the peer must answer with its window
    assert all(p.seq == us + 999 and p.payload == b"" and p.flags == A for p in probes)
    gaps = [round(p.time - t0, 3) for p in probes]
    assert gaps == [0.2, 0.6, 1.4, 3.0]
    assert w.counters["WindowProbes"] == 4
    w.inject(A, 1001, us + 1000, wnd=1000)
    seg = w.one()
    assert seg.payload == b"after"


def test_zero_window_probes_are_answered() -> None:
    w, conn, _proto, us = est(rcvbuf=2048)
    conn.pause_reading()
    w.inject(A, 1001, us, b"f" * 2048)
    assert w.one().wnd == 0
    w.inject(A, 1000 + 2048, us)  # a probe: seq = RCV.NXT - 1
    answer = w.one()
    assert answer.ack == 1001 + 2048 and answer.wnd == 0


def test_sender_sws_override_after_persist_timeout() -> None:
    w, conn, _proto, _us = est(wnd=300)
    conn.write(b"k" * 1000)
    segs = w.sent()
    # 300 bytes of window: less than half the largest window seen? max_snd_wnd is 300, so
    # sending 300 is allowed (it is all the window the peer ever offered)
    assert [len(s.payload) for s in segs] == [300]


def test_write_buffer_back_pressure() -> None:
    w, conn, proto, us = est(sndbuf=4096)
    conn.set_write_buffer_limits(high=1000)
    conn.write(b"1" * 4000)
    assert "pause_writing" not in proto.kinds()
    conn.write(b"2" * 2000)
    assert conn.get_write_buffer_size() == 6000 - 4096
    assert proto.kinds()[-1] == "pause_writing"
    w.sent()
    w.inject(A, 1001, us + 5000)
    assert proto.kinds()[-1] == "resume_writing"


def test_writelines_and_write_errors() -> None:
    import pytest

    w, conn, _proto, _us = est(nodelay=True)
    conn.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
    assert b"".join(s.payload for s in w.sent()) == b"abcdef"
    with pytest.raises(TypeError):
        conn.write("text")


# --- timestamps and PAWS -----------------------------------------------------------------


def ts_est() -> tuple[Wire, Any, Any, int, int]:
    w = Wire({"tcp.window_scaling": False})
    conn, proto, synack = w.accept(
        iss=1000, syn_opts=TCPOptions(mss=MSS, timestamp=(100, 0)))
    return w, conn, proto, synack.seq + 1, synack.opts.timestamp[0]  # type: ignore[index]


def test_timestamps_echo_ts_recent() -> None:
    w, _conn, _proto, us, ours = ts_est()
    w.inject(PA, 1001, us, b"hi", opts=TCPOptions(timestamp=(150, ours)))
    w.advance(0.05)
    ack = w.one()
    assert ack.opts.timestamp is not None and ack.opts.timestamp[1] == 150
    # our clock: milliseconds plus a per-connection offset; the ACK left 40 ms later
    assert (ack.opts.timestamp[0] - ours) % 2**32 == 40


def test_paws_drops_old_timestamps() -> None:
    w, conn, proto, us, ours = ts_est()
    w.inject(PA, 1001, us, b"new", opts=TCPOptions(timestamp=(500, ours)))
    w.inject(PA, 1004, us, b"old", opts=TCPOptions(timestamp=(400, ours)))
    assert bytes(proto.data) == b"new"
    assert w.counters.drops["paws"] == 1
    ack = w.sent()[-1]
    assert ack.ack == 1004
    # RST is exempt from PAWS
    w.inject(A & 0 | 4, 1004, opts=TCPOptions(timestamp=(1, ours)))
    assert conn.state.name == "CLOSED"


def test_timestamps_wrap_around() -> None:
    w = Wire({"tcp.window_scaling": False})
    _conn, proto, synack = w.accept(
        iss=1000, syn_opts=TCPOptions(mss=MSS, timestamp=(2**32 - 10, 0)))
    us = synack.seq + 1
    w.inject(PA, 1001, us, b"wrapped", opts=TCPOptions(timestamp=(5, 0)))
    assert bytes(proto.data) == b"wrapped"


def test_rtt_from_timestamps() -> None:
    w, conn, _proto, us, _ours = ts_est()
    conn.write(b"t" * 100)
    seg = w.one()
    w.advance(0.030)
    w.inject(A, 1001, us + 100, opts=TCPOptions(timestamp=(200, seg.opts.timestamp[0])))  # type: ignore[index]
    # the second sample after the handshake's (0 s on this wire): SRTT = 7/8 * 0 + 1/8 * 30 ms
    assert conn.rtt.srtt is not None and abs(conn.rtt.srtt - 0.030 / 8) < 0.0002


# --- sequence numbers wrap --------------------------------------------------------------


def test_receive_across_sequence_wrap() -> None:
    w = Wire(PLAIN)
    conn, proto, synack = w.accept(iss=2**32 - 5, syn_opts=TCPOptions(mss=MSS))
    us = synack.seq + 1
    w.inject(A, 2**32 - 4, us, b"0123456789")
    w.inject(FA, 6, us, b"abc")
    assert bytes(proto.data) == b"0123456789abc"
    assert w.sent()[-1].ack == 10
    assert conn.state.name == "CLOSE_WAIT"


def test_fin_flag_bits() -> None:
    assert F == 1 and FA == 0x11


def test_data_segments_leave_room_for_sack_blocks() -> None:
    w = Wire({"tcp.sack": True, "tcp.window_scaling": False})
    conn, _proto, synack = w.accept(
        iss=1000, syn_opts=TCPOptions(mss=1460, sack_permitted=True, timestamp=(1, 0)))
    us = synack.seq + 1
    w.inject(A, 1101, us, b"gap", opts=TCPOptions(timestamp=(2, 0)))
    w.sent()
    conn.write(b"s" * 5000)
    segs = w.sent()
    assert segs and all(s.opts.sack == ((1101, 1104),) for s in segs)
    # every frame still fits the 1500-byte MTU
    assert all((s.ip.total_length or 0) <= 1500 for s in segs)
    assert len(segs[0].payload) == conn.mss - 12  # NOP NOP SACK(10)


def test_bare_ack_above_rcv_nxt_is_taken_without_a_duplicate_ack() -> None:
    # A peer whose timeout rewound SND.NXT sends pure ACKs at SND.MAX, above our RCV.NXT while
    # its data is missing. The ACK field counts; answering each one with a duplicate ACK would
    # let two such ends bounce ACKs at each other indefinitely.
    w, conn, _proto, us = est()
    conn.write(b"x" * 100)
    out = w.one()
    assert out.payload == b"x" * 100
    w.inject(A, 1001 + 500, us + 100)  # acknowledges our data; its own 500 bytes were lost
    w.nothing()
    assert conn.snd_una == conn.snd_max  # the acknowledgment was taken
    w.inject(A, 1001 + 500, us + 100, b"tail")  # out-of-order data still draws a dup ACK
    assert w.one().ack == 1001


def test_a_reader_that_takes_views_gets_large_chunks_alone_and_small_ones_joined() -> None:
    # asyncio's StreamReaderProtocol copies what it is given: a GRO super-segment reaches it
    # as the frame's view (a join would be one more copy of it); MSS-sized pieces around it
    # are joined, a call per segment costing more than the copy
    w, conn, proto, us = est(rcvbuf=1 << 20)
    conn.takes_views = True
    conn.pause_reading()
    seq = 1001
    for size in (500, 500, 500, 20000, 500, 500):
        w.inject(A, seq, us, bytes([size % 251]) * size)
        seq += size
    conn.resume_reading()
    w.settle()
    pieces = [(type(d), len(d)) for k, d in proto.events if k == "data"]
    assert [n for _, n in pieces] == [1500, 20000, 1000]
    assert pieces[1][0] is not bytes  # the chunk itself, not a copy
    assert proto.data == b"".join(bytes([s % 251]) * s for s in (500, 500, 500, 20000, 500, 500))

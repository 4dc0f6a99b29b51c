"""Opening connections at segment level: passive and active open, option negotiation,
simultaneous open, SYN/SYN-ACK retransmission, refusals, backlog, ISNs and ports."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from tcp_support import (
    FA,
    PEER_I,
    PEER_PORT,
    PLAIN,
    RA,
    SA,
    US_I,
    A,
    F,
    R,
    Recorder,
    S,
    Seg,
    Wire,
)

from layers.errors import ConfigurationError
from layers.wire.tcp import TCP_MAX_MSS, TCP_MIN_MSS, TCPOptions

# --- passive open ------------------------------------------------------------------------


def test_passive_open_plain() -> None:
    w = Wire(PLAIN)
    _, protos = w.listen(80)
    w.inject(S, 1000, opts=TCPOptions(mss=1000))
    synack = w.one()
    assert synack.flags == SA
    assert synack.ack == 1001
    assert synack.tcp.sport == 80 and synack.tcp.dport == PEER_PORT
    assert synack.opts.mss == 1460  # 1500 - 40
    assert synack.opts.wscale is None and synack.opts.timestamp is None
    assert not synack.opts.sack_permitted
    assert synack.ip.dont_fragment
    assert protos == []  # not established yet
    w.inject(A, 1001, synack.seq + 1)
    w.nothing()
    (p,) = protos
    assert p.kinds() == ["made"]
    conn = p.transport
    assert conn.state.name == "ESTABLISHED"
    assert conn.mss == 1000  # the peer's MSS bounds what we send
    assert conn.get_extra_info("peername") == ("10.0.0.9", PEER_PORT)
    assert conn.get_extra_info("sockname") == ("10.0.0.1", 80)
    assert conn.get_extra_info("socket") is None
    c = w.counters
    assert c["PassiveOpens"] == 1 and c["CurrEstab"] == 1


def test_passive_open_negotiates_what_the_peer_offers() -> None:
    w = Wire({"tcp.sack": True})
    opts = TCPOptions(mss=1400, wscale=9, sack_permitted=True, timestamp=(777, 0))
    conn, _, synack = w.accept(syn_opts=opts)
    o = synack.opts
    assert o.mss == 1460
    assert o.wscale == conn.rcv_wscale and o.wscale is not None
    assert o.sack_permitted
    assert o.timestamp is not None and o.timestamp[1] == 777  # echoes TSval
    assert conn.snd_wscale == 9
    assert conn.ts_ok and conn.sack_ok
    assert conn.mss == 1400 - 12  # timestamps take 12 bytes of every segment
    # the SYN-ACK window is never scaled; later windows are
    assert synack.wnd == 65535
    conn.write(b"x")
    seg = w.one()
    assert seg.wnd == min(conn.rcvbuf >> conn.rcv_wscale, 65535)
    assert seg.opts.timestamp is not None


def test_passive_open_declines_what_the_peer_does_not_offer() -> None:
    w = Wire({"tcp.sack": True})
    conn, _, synack = w.accept(syn_opts=TCPOptions(mss=1460))
    o = synack.opts
    assert o.wscale is None and o.timestamp is None and not o.sack_permitted
    assert not conn.ts_ok and not conn.sack_ok
    assert conn.snd_wscale == 0 and conn.rcv_wscale == 0
    assert conn.mss == 1460


def test_no_mss_option_means_536() -> None:
    w = Wire(PLAIN)
    conn, _, _ = w.accept(syn_opts=None)
    assert conn.mss == 536


def test_a_peer_mss_down_to_the_floor_is_honoured_and_below_it_raised() -> None:
    # a small MSS a real peer announces bounds our segments exactly (48..87 included)
    for announced, used in ((60, 60), (48, 48), (20, 48), (1, 48)):
        w = Wire(PLAIN)
        conn, _, _ = w.accept(syn_opts=TCPOptions(mss=announced))
        assert conn.mss == used == max(announced, TCP_MIN_MSS)
        conn.write(b"x" * 200)  # full segments go at once; Nagle holds the short remainder
        assert [len(s.payload) for s in w.sent()] == [used] * (200 // used)


def test_the_mss_option_is_bounded_by_the_mss_floor_and_the_largest_datagram() -> None:
    w = Wire(PLAIN)
    assert TCP_MIN_MSS == 48 and TCP_MAX_MSS == 65495
    for bad in (TCP_MIN_MSS - 1, TCP_MAX_MSS + 1):
        with pytest.raises(ConfigurationError, match=r"mss=\d+ should be within 48\.\.65495"):
            w.tcp.connect(Recorder(), PEER_I, 80, mss=bad)
    conn, _, syn = w.connect(mss=TCP_MIN_MSS)
    assert syn.opts.mss == TCP_MIN_MSS and conn.mss == TCP_MIN_MSS


def test_peer_window_scale_applies_after_the_handshake() -> None:
    w = Wire()
    conn, _, _ = w.accept(syn_opts=TCPOptions(mss=1460, wscale=4, timestamp=(1, 0)))
    # the handshake ACK carried 65535 << 4
    assert conn.snd_wnd == 65535 << 4
    w.inject(A, 1001, conn.snd_nxt, wnd=100, opts=TCPOptions(timestamp=(2, 0)))
    assert conn.snd_wnd == 1600


def test_window_scale_above_14_is_clamped() -> None:
    w = Wire()
    conn, _, _ = w.accept(syn_opts=TCPOptions(mss=1460, wscale=20))
    assert conn.snd_wscale == 14


def test_retransmitted_syn_gets_the_syn_ack_again() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    w.inject(S, 1000)
    first = w.one()
    w.inject(S, 1000)
    again = w.one()
    assert again.flags == SA and again.seq == first.seq and again.ack == 1001


def test_syn_ack_retransmission_times() -> None:
    w = Wire(PLAIN | {"tcp.synack_retries": 3})
    w.listen(80)
    w.inject(S, 1000)
    t0 = w.now
    w.one()
    got = []
    for step in range(1, 40):
        w.run_until(t0 + step * 0.5)
        got += [(round(s.time - t0, 3), s.flags) for s in w.sent()]
    # initial RTO 1 s, doubled each time: 1, 3, 7; dropped at 15
    assert got == [(1.0, SA), (3.0, SA), (7.0, SA)]
    assert w.tcp.conns == {}


def test_ack_to_listener_without_connection_is_reset() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    w.inject(A, 1000, 4242)
    rst = w.one()
    assert rst.flags == R and rst.seq == 4242


def test_rst_to_listener_is_ignored() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    w.inject(R, 1000)
    w.nothing()


def test_bad_ack_in_syn_received_is_reset() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    w.inject(S, 1000)
    synack = w.one()
    w.inject(A, 1001, synack.seq + 50)
    rst = w.one()
    assert rst.flags == R and rst.seq == synack.seq + 50
    assert w.tcp.conns[(US_I, 80, PEER_I, PEER_PORT)].state.name == "SYN_RECEIVED"


def test_rst_in_syn_received_returns_to_listen() -> None:
    w = Wire(PLAIN)
    lst, protos = w.listen(80)
    w.inject(S, 1000)
    w.one()
    w.inject(R, 1001)
    assert w.tcp.conns == {}
    assert protos == []
    assert not lst.syn_queue


# --- closed ports (RFC 9293 3.10.7.1) -------------------------------------------------------


def test_syn_to_closed_port_gets_rst_ack() -> None:
    w = Wire(PLAIN)
    w.inject(S, 1000, dport=81)
    rst = w.one()
    assert rst.flags == RA and rst.seq == 0 and rst.ack == 1001
    assert w.counters["OutRsts"] == 1
    assert w.counters.drops["no_socket"] == 1


def test_data_to_closed_port_acks_the_whole_segment() -> None:
    w = Wire(PLAIN)
    w.inject(S & 0, 7000, payload=b"hello", dport=81)  # no flags at all
    rst = w.one()
    assert rst.flags == RA and rst.ack == 7005


def test_ack_to_closed_port_gets_rst_at_ack() -> None:
    w = Wire(PLAIN)
    w.inject(A, 7000, 123456, dport=81)
    rst = w.one()
    assert rst.flags == R and rst.seq == 123456


def test_rst_to_closed_port_is_not_answered() -> None:
    w = Wire(PLAIN)
    w.inject(RA, 7000, 1, dport=81)
    w.nothing()


# --- active open ---------------------------------------------------------------------------


def test_active_open_plain() -> None:
    w = Wire(PLAIN)
    conn, proto, syn = w.connect(synack_opts=TCPOptions(mss=1200))
    assert syn.opts.mss == 1460 and syn.opts.wscale is None and syn.opts.timestamp is None
    assert proto.kinds() == ["made"]
    assert conn.state.name == "ESTABLISHED"
    assert conn.mss == 1200
    assert w.counters["ActiveOpens"] == 1


def test_active_open_offers_options() -> None:
    w = Wire({"tcp.sack": True})
    proto = Recorder()
    w.tcp.connect(proto, PEER_I, 80)
    syn = w.one()
    o = syn.opts
    assert o.mss == 1460 and o.wscale is not None and o.sack_permitted
    assert o.timestamp is not None and o.timestamp[1] == 0
    assert syn.wnd == 65535


def test_active_open_with_peer_options() -> None:
    w = Wire()
    conn, _, syn = w.connect(
        synack_opts=TCPOptions(mss=1460, wscale=2, timestamp=(99, 0)))
    assert conn.ts_ok and conn.snd_wscale == 2 and conn.rcv_wscale == syn.opts.wscale
    assert conn.mss == 1448
    assert conn.ts_recent == 99


def test_active_open_declines_wscale_when_peer_did_not_answer() -> None:
    w = Wire()
    conn, _, _ = w.connect(synack_opts=TCPOptions(mss=1460))
    assert conn.snd_wscale == 0 and conn.rcv_wscale == 0 and not conn.ts_ok


def test_syn_retransmitted_with_backoff_then_etimedout() -> None:
    w = Wire(PLAIN | {"tcp.syn_retries": 3})
    results: list[BaseException | None] = []
    proto = Recorder()
    w.tcp.connect(proto, PEER_I, 80, on_connected=results.append)
    t0 = w.now
    w.one()
    got = []
    for step in range(1, 40):
        w.run_until(t0 + step * 0.5)
        got += [round(s.time - t0, 3) for s in w.sent()]
    assert got == [1.0, 3.0, 7.0]
    (exc,) = results
    assert isinstance(exc, TimeoutError) and exc.errno == errno.ETIMEDOUT
    assert proto.events == []  # connection_made never happened
    assert w.tcp.conns == {}
    assert w.counters["AttemptFails"] == 1


def test_rst_ack_to_syn_is_connection_refused() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    w.inject(RA, 0, syn.seq + 1, sport=80, dport=syn.tcp.sport)
    (exc,) = results
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED
    assert w.tcp.conns == {}


def test_rst_with_wrong_ack_in_syn_sent_is_ignored() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    w.inject(RA, 0, syn.seq + 7, sport=80, dport=syn.tcp.sport)
    # an unacceptable ACK in SYN-SENT: RST is not sent in reply to a RST
    w.nothing()
    assert results == []
    w.inject(R, 0, sport=80, dport=syn.tcp.sport)  # no ACK: ignored too
    assert results == []


def test_bad_ack_in_syn_sent_gets_reset() -> None:
    w = Wire(PLAIN)
    w.tcp.connect(Recorder(), PEER_I, 80)
    syn = w.one()
    w.inject(SA, 300, syn.seq + 9, sport=80, dport=syn.tcp.sport)
    rst = w.one()
    assert rst.flags == R and rst.seq == syn.seq + 9


def test_simultaneous_open() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    proto = Recorder()
    conn = w.tcp.connect(proto, PEER_I, 80, on_connected=results.append)
    syn = w.one()
    lport = syn.tcp.sport
    # the peer's own SYN crosses ours
    w.inject(S, 9000, sport=80, dport=lport)
    synack = w.one()
    assert synack.flags == SA and synack.seq == syn.seq and synack.ack == 9001
    assert conn.state.name == "SYN_RECEIVED"
    # the peer's SYN-ACK for our SYN
    w.inject(SA, 9000, syn.seq + 1, sport=80, dport=lport)
    assert conn.state.name == "ESTABLISHED"
    assert results == [None] and proto.kinds() == ["made"]
    w.sent()


def test_simultaneous_open_completed_by_ack() -> None:
    w = Wire(PLAIN)
    proto = Recorder()
    conn = w.tcp.connect(proto, PEER_I, 80)
    syn = w.one()
    w.inject(S, 9000, sport=80, dport=syn.tcp.sport)
    w.one()
    w.inject(A, 9001, syn.seq + 1, sport=80, dport=syn.tcp.sport)
    assert conn.state.name == "ESTABLISHED" and proto.kinds() == ["made"]


def test_rst_in_simultaneous_open_is_refused() -> None:
    w = Wire(PLAIN)
    results: list[BaseException | None] = []
    w.tcp.connect(Recorder(), PEER_I, 80, on_connected=results.append)
    syn = w.one()
    w.inject(S, 9000, sport=80, dport=syn.tcp.sport)
    w.one()
    w.inject(R, 9001, sport=80, dport=syn.tcp.sport)
    assert isinstance(results[0], ConnectionRefusedError)


def test_lost_ack_of_syn_ack_answered_from_established() -> None:
    w = Wire(PLAIN)
    conn, _, syn = w.connect(iss=5000)
    # the peer did not get our ACK and retransmits its SYN-ACK
    w.inject(SA, 5000, syn.seq + 1, sport=80, dport=syn.tcp.sport)
    ack = w.one()
    assert ack.flags == A and ack.ack == 5001
    assert conn.state.name == "ESTABLISHED"


# --- backlog -------------------------------------------------------------------------------


def test_backlog_bounds_syn_queue() -> None:
    w = Wire({**PLAIN, "tcp.syncookies": 0})
    w.listen(80, backlog=2)
    for i in range(3):
        w.inject(S, 1000, sport=40000 + i)
    assert len([s for s in w.sent() if s.flags == SA]) == 2
    assert w.counters["ListenDrops"] == 1


def test_a_full_syn_queue_answers_with_a_syn_cookie() -> None:
    w = Wire(PLAIN)  # tcp.syncookies 1, Linux's default
    lst, _ = w.listen(80, backlog=2)
    for i in range(3):
        w.inject(S, 1000, sport=40000 + i)
    assert len([s for s in w.sent() if s.flags == SA]) == 3
    assert w.counters["SyncookiesSent"] == 1 and len(lst.syn_queue) == 2


def test_accept_queue_when_not_accepting() -> None:
    w = Wire(PLAIN)
    lst, protos = w.listen(80, backlog=1, accepting=False)
    w.inject(S, 1000, sport=40001)
    sa1 = w.one()
    w.inject(A, 1001, sa1.seq + 1, sport=40001)
    assert len(lst.accept_queue) == 1 and protos == []
    # data for a queued connection is kept for its protocol (and acknowledged)
    w.inject(A, 1001, sa1.seq + 1, b"early", sport=40001)
    w.advance(0.2)
    (ack,) = w.sent()
    assert ack.ack == 1006
    # the accept queue is full: a new SYN is dropped
    w.inject(S, 1000, sport=40002)
    w.nothing()
    assert w.counters["ListenDrops"] == 1
    lst.start_accepting()
    (p,) = protos
    assert p.kinds() == ["made", "data"] and bytes(p.data) == b"early"


def test_final_ack_dropped_when_accept_queue_full() -> None:
    w = Wire({**PLAIN, "tcp.syncookies": 0})
    lst, _protos = w.listen(80, backlog=1, accepting=False)
    w.inject(S, 1000, sport=40001)
    w.inject(S, 1000, sport=40002)  # dropped: SYN queue full (backlog 1)
    (sa1,) = w.sent()
    w.inject(A, 1001, sa1.seq + 1, sport=40001)
    assert len(lst.accept_queue) == 1


def test_listener_close_resets_pending() -> None:
    w = Wire(PLAIN)
    lst, _ = w.listen(80, accepting=False)
    w.inject(S, 1000, sport=40001)
    sa = w.one()
    w.inject(A, 1001, sa.seq + 1, sport=40001)
    w.inject(S, 3000, sport=40002)
    w.one()
    lst.close()
    rsts = w.sent()
    assert sorted(s.tcp.dport for s in rsts if s.flags & R) == [40001, 40002]
    assert w.tcp.conns == {} and w.tcp.listeners == {}
    w.inject(S, 1000, sport=40003)
    assert w.one().flags == RA


def test_listen_conflicts_and_ephemeral_listen_port() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    with pytest.raises(OSError) as info:
        w.listen(80)
    assert info.value.errno == errno.EADDRINUSE
    lst, _ = w.listen(0)
    assert 32768 <= lst.port <= 60999
    with pytest.raises(OSError) as info:
        w.tcp.listen(Recorder, 0x0A000063, 90)
    assert info.value.errno == errno.EADDRNOTAVAIL


# --- numbers -------------------------------------------------------------------------------


def test_isn_depends_on_tuple_secret_and_clock() -> None:
    w = Wire(PLAIN)
    t = w.tcp
    k1 = (US_I, 80, PEER_I, 1)
    k2 = (US_I, 80, PEER_I, 2)
    assert t.isn(k1) != t.isn(k2)
    a = t.isn(k1)
    w.advance(1.0)
    assert (t.isn(k1) - a) & 0xFFFFFFFF == 250_000  # the 4 µs clock
    w2 = Wire(PLAIN | {"tcp.secret": "ff" * 16})
    assert w2.tcp.isn(k1) != a + 250_000


def test_ephemeral_ports_are_spread_and_unique() -> None:
    w = Wire(PLAIN | {"tcp.port_range": "40000-40009"})
    ports = []
    for _ in range(10):
        w.tcp.connect(Recorder(), PEER_I, 80)
        ports.append(w.one().tcp.sport)
    assert sorted(ports) == list(range(40000, 40010))
    with pytest.raises(OSError) as info:
        w.tcp.connect(Recorder(), PEER_I, 80)
    assert info.value.errno == errno.EADDRNOTAVAIL
    # another destination has its own offset
    w.tcp.connect(Recorder(), PEER_I, 81)


def test_ephemeral_port_sequence_differs_by_secret() -> None:
    def first_ports(secret: str) -> list[int]:
        w = Wire(PLAIN | {"tcp.secret": secret})
        out = []
        for _ in range(3):
            w.tcp.connect(Recorder(), PEER_I, 80)
            out.append(w.one().tcp.sport)
        return out

    assert first_ports("01" * 16) != first_ports("02" * 16)


def test_connect_errors() -> None:
    w = Wire(PLAIN)
    with pytest.raises(OSError) as info:
        w.tcp.connect(Recorder(), 0x0B000001, 80)  # 11.0.0.1: no route
    assert info.value.errno == errno.ENETUNREACH
    with pytest.raises(ConfigurationError, match="unknown TCP option"):
        w.tcp.connect(Recorder(), PEER_I, 80, nodelai=True)
    with pytest.raises(ConfigurationError, match="congestion"):
        w.tcp.connect(Recorder(), PEER_I, 80, congestion_control="cubic-ish")
    with pytest.raises(ConfigurationError):
        w.tcp.connect(Recorder(), PEER_I, 0)


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="port_range"):
        Wire({"tcp.port_range": "9-2"})
    with pytest.raises(ConfigurationError, match="congestion_control"):
        Wire({"tcp.congestion_control": "nope"})


# --- simultaneous open, then close (regression: the RTO resent from SND.UNA = ISS, offset -1
# in the send buffer: an IndexError in the timer with nothing queued, wrong bytes with data) ---


def _simultaneous_open_to_syn_received(w: Wire) -> tuple[Any, Recorder, Seg, Seg]:
    proto = Recorder()
    conn = w.tcp.connect(proto, PEER_I, 80)
    syn = w.one()  # frame 1: our SYN
    w.inject(S, 9000, sport=80, dport=syn.tcp.sport)  # frame 2: the peer's bare SYN
    synack = w.one()  # frame 3: our SYN-ACK
    assert conn.state.name == "SYN_RECEIVED"
    return conn, proto, syn, synack


@pytest.mark.parametrize("queued", [b"", b"hello world" * 100])
def test_close_in_simultaneous_open_resends_the_syn_not_data(queued: bytes) -> None:
    w = Wire(PLAIN)
    conn, _p, syn, _s = _simultaneous_open_to_syn_received(w)
    if queued:
        conn.write(queued)
    conn.close()
    w.nothing()  # the FIN waits for ESTABLISHED (RFC 9293 3.10.4, CLOSE in SYN-RECEIVED)
    assert conn.state.name == "SYN_RECEIVED"
    w.advance(1.5)  # past the initial RTO
    segs = w.sent()
    assert segs, "the timer must resend our SYN-ACK"
    for seg in segs:
        assert seg.flags == SA and seg.seq == syn.seq and seg.payload == b"", seg
    assert w.stack.counters["stack"].drops.get("internal_error", 0) == 0
    # the peer's ACK completes the open; now the data and the FIN go out, in order
    w.inject(A, 9001, syn.seq + 1, sport=80, dport=syn.tcp.sport)
    out = w.sent()
    stream = b"".join(s.payload for s in out)
    assert stream == queued
    for s in out:
        assert s.seq >= syn.seq + 1
    off = syn.seq + 1
    for s in out:
        assert s.seq == off
        off += len(s.payload)
    assert out[-1].flags & F
    assert conn.state.name == "FIN_WAIT_1"
    w.inject(FA, 9001, off + 1, sport=80, dport=syn.tcp.sport)
    assert conn.state.name == "TIME_WAIT"
    assert w.stack.counters["stack"].drops.get("internal_error", 0) == 0


def test_close_in_simultaneous_open_times_out_when_the_peer_never_answers() -> None:
    w = Wire(PLAIN)
    conn, *_ = _simultaneous_open_to_syn_received(w)
    conn.close()
    w.advance(300)
    assert conn.state.name == "CLOSED"
    assert w.stack.counters["stack"].drops.get("internal_error", 0) == 0
    assert all(s.flags == SA for s in w.sent())


def test_send_buffer_rejects_negative_offsets() -> None:
    from layers_tcp.buffers import SendBuffer

    buf = SendBuffer()
    buf.append(b"abc")
    with pytest.raises(ValueError, match="negative"):
        buf.view(-1, 2)
    with pytest.raises(ValueError, match="negative"):
        SendBuffer().view(-1, 0)

"""Recovery that undoes its mistakes, at segment level on the virtual clock: D-SACK blocks
sent for duplicate data (RFC 2883), reordered pure ACKs that PAWS lets through as Linux does
(tcp_disordered_ack), spurious retransmissions found by D-SACK (RFC 3708) and spurious
timeouts found by F-RTO (RFC 5682), each undone through the congestion control's on_undo."""

from __future__ import annotations

from typing import Any

from tcp_support import PA, A, Seg, Wire

from layers.wire.tcp import TCPOptions

MSS = 1000


def est(settings: dict[str, Any] | None = None, *, sack: bool = True,
        ts: bool = False) -> tuple[Wire, Any, int]:
    base = {"tcp.window_scaling": False, "tcp.sack": sack, "tcp.timestamps": ts}
    w = Wire(base | (settings or {}))
    syn = TCPOptions(mss=MSS, sack_permitted=sack, timestamp=(100, 0) if ts else None)
    conn, _proto, synack = w.accept(iss=1000, syn_opts=syn)
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

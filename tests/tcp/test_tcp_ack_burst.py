"""A sender's ACKs that arrive in one burst release their data once, after the burst (the
flush is a ``call_soon`` every driver of ``stack.receive`` runs at its next poll); fed frame
by frame, the stack sends after each ACK as before; an ACK that is due leaves at once."""

from __future__ import annotations

from typing import Any

from tcp_support import PA, A, Wire
from test_tcp_offload import offload_wire

from layers.wire.tcp import TCPHeader, TCPOptions

MSS = 1460  # no timestamps


def _sender() -> tuple[Wire, Any, Any, int, int]:
    w, link = offload_wire()
    conn, _, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1460, wscale=7), wnd=65535)
    conn.write(bytes(2_000_000))
    link.sent.clear()
    return w, link, conn, 1001, synack.seq + 1


def test_a_burst_of_acks_releases_one_super_segment_after_it() -> None:
    w, link, _, seq, una = _sender()
    settle = w.settle
    w.settle = lambda: None  # type: ignore[method-assign]  # frames of one burst, no poll
    for i in range(1, 6):
        w.inject(A, seq, una + 2 * i * MSS, wnd=65535)
    assert link.sent == []  # nothing left during the burst
    settle()
    # ten segments acknowledged in slow start: twenty may go, in one TSO send
    assert len(link.sent) == 1
    frame, off = link.sent[0]
    assert off is not None and off.gso_size == MSS
    assert len(frame) - off.hdr_len == 20 * MSS


def test_frame_by_frame_each_ack_sends_at_once() -> None:
    w, link, _, seq, una = _sender()
    for i in range(1, 6):
        w.inject(A, seq, una + 2 * i * MSS, wnd=65535)  # settles: polls after the frame
        assert len(link.sent) == i
    assert [len(f) - off.hdr_len for f, off in link.sent] == [4 * MSS] * 5


def test_an_ack_due_goes_out_at_once_on_data() -> None:
    w, link, conn, seq, una = _sender()
    w.settle = lambda: None  # type: ignore[method-assign]
    w.inject(PA, seq, una + 2 * MSS, b"x" * 100, wnd=65535)
    # the data received is acknowledged now, on the data the ACK released
    assert len(link.sent) == 1
    frame, off = link.sent[0]
    tcp = TCPHeader.from_bytes(frame[20:])
    assert tcp.ack == seq + 100 and off is not None and len(frame) - off.hdr_len == 4 * MSS
    assert conn.conn.last_ack_sent == conn.conn.rcv_nxt

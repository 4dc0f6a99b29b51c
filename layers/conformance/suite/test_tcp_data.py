"""TCP data transfer: acknowledgement, reordering, overlap, flow control, SACK."""

from __future__ import annotations

from collections.abc import Callable

from scapy.layers.inet import TCP
from scapy.packet import Packet

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import TCPPeer, after, open_active, open_passive, option, payload_of
from layers.conformance.testbench import Testbench

pytestmark = requires("tcp")

QUIET = 0.3


def _blob(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


def test_data_is_acknowledged_and_delivered(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    data = _blob(1000)
    peer.send("PA", data)
    peer.expect("A", ack=1 + 1000)
    assert dut.recv_exactly(conn, 1000) == data


def test_dut_data_arrives_in_order_with_sequence_numbers(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    data = _blob(5000, 3)
    dut.send(conn, data)
    first = peer.expect("A", data=True)
    assert peer.dut_rel(first[TCP].seq) == 1
    peer.send("A")
    rest = peer.recv_data(len(data) - len(payload_of(first)))
    assert payload_of(first) + rest == data


def test_duplicate_segment_is_acked_again(dut: DUT, tb: Testbench) -> None:
    # RFC 9293 3.10.7.4: an old (wholly duplicate) segment is answered with an ACK
    peer, conn, _ = open_passive(dut, tb)
    peer.send("PA", b"once")
    peer.expect("A", ack=5)
    peer.send("PA", b"once", seq=1)
    peer.expect("A", ack=5, what="ACK for the duplicate")
    assert dut.recv(conn) == b"once"
    assert dut.recv(conn, timeout=QUIET) is None, "the duplicate was delivered twice"


@requires("tcp.out_of_order")
def test_out_of_order_segment_is_held_then_delivered(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    a, b = _blob(500, 1), _blob(500, 2)
    peer.send("PA", b, seq=501)
    peer.expect("A", ack=1, what="immediate duplicate ACK for the hole (RFC 5681 4.2)")
    assert dut.recv(conn, timeout=0.1) is None
    peer.send("PA", a, seq=1)
    peer.expect("A", ack=1001, what="cumulative ACK once the hole is filled")
    assert dut.recv_exactly(conn, 1000) == a + b


@requires("tcp.out_of_order")
def test_reverse_order_segments_are_reassembled(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    data = _blob(4 * 400, 9)
    for i in reversed(range(4)):
        peer.send("PA", data[i * 400:(i + 1) * 400], seq=1 + i * 400)
    peer.expect("A", ack=1 + len(data))
    assert dut.recv_exactly(conn, len(data)) == data


@requires("tcp.out_of_order")
def test_overlapping_segments_are_delivered_once(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    data = _blob(300, 5)
    peer.send("PA", data[0:100], seq=1)
    peer.send("PA", data[50:200], seq=51)
    peer.send("PA", data[150:300], seq=151)
    peer.expect("A", ack=301)
    assert dut.recv_exactly(conn, 300) == data
    assert dut.recv(conn, timeout=0.1) is None


@requires("tcp.out_of_order")
def test_segment_overlapping_queued_data_fills_the_hole(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    data = _blob(400, 11)
    peer.send("PA", data[200:300], seq=201)
    peer.expect("A", ack=1)
    peer.send("PA", data[0:250], seq=1)  # overlaps the queued block
    peer.send("PA", data[300:400], seq=301)
    peer.expect("A", ack=401)
    assert dut.recv_exactly(conn, 400) == data


@requires("tcp.sack")
def test_sack_block_reports_out_of_order_data(dut: DUT, tb: Testbench) -> None:
    peer, _conn, _ = open_passive(dut, tb, options=[("MSS", 1460), ("SAckOK", b"")])
    peer.send("PA", _blob(300), seq=301)
    ack = peer.expect("A", ack=1)
    blocks = option(ack, "SAck")
    assert blocks is not None, "no SACK option on the duplicate ACK"
    left, right = peer.rel(blocks[0]), peer.rel(blocks[1])
    assert (left, right) == (301, 601)


def test_dut_respects_the_peer_window(dut: DUT, tb: Testbench) -> None:
    # a window of exactly four segments, so sender SWS avoidance (RFC 9293 3.8.6.2.1) never
    # has a reason to hold back a partial one
    peer, conn, _ = open_passive(dut, tb, window=2000, options=[("MSS", 500)])
    data = _blob(8000, 4)
    dut.send(conn, data)
    got = b""
    for _ in range(4):
        edge = len(got) + 2000
        while len(got) < edge:
            seg = peer.expect("A", data=True)
            start = peer.dut_rel(seg[TCP].seq) - 1
            end = start + len(payload_of(seg))
            assert end <= edge, f"sent up to {end}, window ended at {edge}"
            if start == len(got):
                got += payload_of(seg)
        peer.expect_none(data=True, window=0.1, what="nothing beyond the window",
                         where=_starts_at_or_after(peer, edge))
        peer.send("A", ack=len(got) + 1)
    assert got == data


@requires("tcp.window_scaling")
def test_dut_applies_the_peer_window_scale(dut: DUT, tb: Testbench) -> None:
    # window field 250 with shift 4: 4000 bytes may be in flight
    opts = [("MSS", 1000), ("NOP", None), ("WScale", 4)]
    peer, conn, _ = open_passive(dut, tb, options=opts, window=250)
    dut.send(conn, _blob(10000))
    sent = 0
    while True:
        seg = peer.try_expect("A", data=True, timeout=0.3)
        if seg is None:
            break
        sent = max(sent, peer.dut_rel(seg[TCP].seq) - 1 + len(payload_of(seg)))
    assert 250 < sent <= 4000, sent


def _starts_at_or_after(peer: TCPPeer, offset: int) -> Callable[[Packet], bool]:
    return lambda p: peer.dut_rel(p[TCP].seq) - 1 >= offset


def _acks_beyond(seq: int) -> Callable[[Packet], bool]:
    return lambda p: after(p[TCP].ack, seq)


def _fill_window(peer: TCPPeer, limit: int = 400) -> Packet:
    """Send segments until the DUT advertises a zero window; its last ACK. What the DUT did
    not acknowledge counts as not sent."""
    for _ in range(limit):
        sent = peer.snd_nxt
        peer.send("A", _blob(500))
        ack = peer.expect("A", where=_acks_beyond(sent))
        if ack[TCP].ack != peer.snd_nxt:
            peer.snd_nxt = int(ack[TCP].ack)  # the tail beyond the window was not taken
        if ack[TCP].window == 0:
            return ack
    raise AssertionError(f"the window never closed after {limit} segments")


def test_receive_window_closes_and_reopens(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb, rcvbuf=8192)
    _fill_window(peer)
    filled = peer.snd_rel - 1
    got = dut.recv_exactly(conn, filled, timeout=2.0)
    assert len(got) == filled
    update = peer.expect("A", where=lambda p: p[TCP].window > 0, what="window update")
    assert peer.rel(update[TCP].ack) == peer.snd_rel


def test_sender_keeps_data_for_a_closed_window(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.send(s, _blob(100, 1))
    assert peer.recv_data(100, ack=False) == _blob(100, 1)
    peer.send("A", window=0)
    dut.send(s, _blob(100, 2))
    peer.expect_none(data=True, window=0.1,
                     where=lambda p: len(payload_of(p)) > 1, what="data into a closed window")
    peer.send("A", window=4000)
    assert peer.recv_data(100) == _blob(100, 2)

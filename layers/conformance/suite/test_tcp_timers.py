"""TCP timers: SYN and data retransmission with backoff (RFC 6298), fast retransmit
(RFC 5681), zero-window probing (RFC 9293 3.8.6.1). Windows are wide enough for a real
kernel and exact on the virtual clock."""

from __future__ import annotations

from itertools import pairwise

from scapy.layers.inet import TCP
from scapy.packet import Packet

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import DUT_PORT, TCPPeer, listen, open_active, payload_of
from layers.conformance.testbench import Testbench, arrival

pytestmark = requires("tcp", "tcp.retransmission")


def _gaps(pkts: list[Packet]) -> list[float]:
    return [arrival(b) - arrival(a) for a, b in pairwise(pkts)]


def _doubling(gaps: list[float]) -> bool:
    return all(1.5 <= b / a <= 2.6 for a, b in pairwise(gaps))


def test_syn_is_retransmitted_with_backoff(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9191)
    peer = TCPPeer(tb, dut, port=9191)
    syns = [peer.expect("S")]
    syns += [peer.expect("S", timeout=2.6) for _ in range(2)]
    assert len({int(p[TCP].seq) for p in syns}) == 1, "a retransmitted SYN keeps its ISN"
    gaps = _gaps(syns)
    assert 0.8 <= gaps[0] <= 1.6, gaps  # RFC 6298 2.1: the initial RTO is 1 second
    # RFC 6298 5.5 doubles it; Linux 6.5+ keeps the first SYN timeouts linear
    # (net.ipv4.tcp_syn_linear_timeouts), so only "never shorter" is common ground
    assert gaps[1] >= gaps[0] * 0.95, gaps


def test_syn_ack_is_retransmitted(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.send("S", options=peer.syn_options())
    first = peer.expect("SA", ack=1)
    again = peer.expect("SA", ack=1, timeout=2.0, what="the SYN-ACK again")
    assert again[TCP].seq == first[TCP].seq
    assert 0.8 <= arrival(again) - arrival(first) <= 1.6


def test_data_is_retransmitted_with_backoff(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.send(s, b"are you there?")
    sends = [peer.expect("A", data=True)]
    sends += [peer.expect("A", seq=1, data=True, timeout=2.0) for _ in range(3)]
    gaps = _gaps(sends)
    assert gaps[0] >= 0.15, gaps  # no retransmission before a minimum RTO
    assert _doubling(gaps), gaps
    assert all(payload_of(p) == b"are you there?" for p in sends)


def test_acknowledged_data_is_not_retransmitted(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.send(s, b"acked at once")
    assert peer.recv_data(13) == b"acked at once"
    peer.expect_none(data=True, window=0.6, what="retransmission of acknowledged data")


@requires("tcp.fast_retransmit")
def test_fast_retransmit_after_three_duplicate_acks(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb, options=[("MSS", 1000)])
    dut.send(s, bytes(10_000))
    segs = [peer.expect("A", data=True) for _ in range(6)]
    starts = sorted(peer.dut_rel(p[TCP].seq) for p in segs)
    assert starts[:3] == [1, 1001, 2001], starts
    # segment 2 (1001..2000) is "lost": acknowledge segment 1, then duplicates
    peer.send("A", ack=1001)
    peer.send("A", ack=1001)
    peer.send("A", ack=1001)
    peer.expect_none(seq=1001, data=True, window=0.05, what="retransmission after 2 dup ACKs")
    peer.send("A", ack=1001)
    sent = tb.now
    retx = peer.expect("A", seq=1001, data=True, timeout=0.5, what="fast retransmission")
    assert arrival(retx) - sent < 0.15, "came by timeout, not by duplicate ACKs"


@requires("tcp.zero_window_probe")
def test_zero_window_is_probed_with_backoff(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.send(s, b"first")
    assert peer.recv_data(5, ack=False) == b"first"
    peer.send("A", window=0)
    dut.send(s, b"waiting for a window")

    def probe(p: Packet) -> bool:
        # a zero-window probe: one new byte (RFC 9293), or an old sequence number and no data
        rel = peer.dut_rel(p[TCP].seq)
        return (rel == 6 and len(payload_of(p)) <= 1) or rel == 5

    probes: list[Packet] = []
    deadline = tb.now + 3.5
    while len(probes) < 3 and tb.now < deadline:
        got = peer.try_expect("A", timeout=deadline - tb.now, where=probe)
        if got is None:
            break
        probes.append(got)
        peer.send("A", ack=6, window=0)
    assert len(probes) >= 3, f"{len(probes)} zero-window probes"
    gaps = _gaps(probes)
    assert gaps[1] > gaps[0] * 1.3, gaps
    peer.send("A", ack=6, window=4000)
    data = b""
    while len(data) < 20:
        seg = peer.expect("A", data=True, timeout=2.0)
        rel = peer.dut_rel(seg[TCP].seq) - 6
        body = payload_of(seg)
        if rel <= len(data) < rel + len(body):
            data += body[len(data) - rel:]
    assert data == b"waiting for a window"

"""Closing TCP connections: FIN in each closing state, TIME-WAIT, resets on close
(RFC 9293 3.6 and 3.10.7.4, RFC 1122 4.2.2.13, RFC 2525 2.17)."""

from __future__ import annotations

from scapy.layers.inet import TCP

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import open_active, open_passive
from layers.conformance.testbench import Testbench

pytestmark = requires("tcp")

QUIET = 0.3


def test_fin_is_acknowledged_and_reads_as_eof(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FA")
    peer.expect("A", ack=2, what="ACK of the FIN")
    assert dut.recv(conn) == b""


@requires("tcp.state")
def test_passive_close_goes_through_close_wait_and_last_ack(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FA")
    peer.expect("A", ack=2)
    assert dut.state(conn) == "CLOSE-WAIT"
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1, ack=2, what="the DUT's FIN")
    assert dut.state(conn) == "LAST-ACK"
    peer.send("A")
    tb.sleep(0.05)
    assert dut.state(conn) == "CLOSED"


@requires("tcp.state")
def test_active_close_goes_through_fin_wait_and_time_wait(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1)
    assert dut.state(conn) == "FIN-WAIT-1"
    peer.send("A")
    tb.sleep(0.05)
    assert dut.state(conn) == "FIN-WAIT-2"
    peer.send("FA")
    peer.expect("A", ack=2, seq=2)
    assert dut.state(conn) == "TIME-WAIT"


@requires("tcp.state")
def test_simultaneous_close_goes_through_closing(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1)
    peer.send("FA", ack=1)  # our FIN crosses theirs: it does not acknowledge it
    peer.expect("A", ack=2, what="ACK of our FIN")
    assert dut.state(conn) == "CLOSING"
    peer.send("A", ack=2)
    tb.sleep(0.05)
    assert dut.state(conn) == "TIME-WAIT"


def test_fin_with_data_delivers_data_then_eof(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FPA", b"last words")
    peer.expect("A", ack=1 + 10 + 1)
    assert dut.recv_exactly(conn, 10) == b"last words"
    assert dut.recv(conn) == b""


def test_half_closed_dut_keeps_sending(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FA")
    peer.expect("A", ack=2)
    assert dut.recv(conn) == b""
    dut.send(conn, b"after your FIN")
    assert peer.recv_data(14) == b"after your FIN"


def test_fin_wait_2_still_receives(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1)
    peer.send("A")
    peer.send("PA", b"more for you")
    peer.expect("A", ack=1 + 12)
    assert dut.recv_exactly(conn, 12) == b"more for you"


@requires("tcp.out_of_order")
def test_fin_after_a_hole_waits_for_it(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FPA", b"tail", seq=1 + 4)
    peer.expect("A", ack=1, what="duplicate ACK: the FIN is beyond a hole")
    peer.send("PA", b"head", seq=1)
    peer.expect("A", ack=1 + 8 + 1, what="ACK of data and FIN")
    assert dut.recv_exactly(conn, 8) == b"headtail"
    assert dut.recv(conn) == b""


@requires("tcp.time_wait")
def test_time_wait_acknowledges_a_retransmitted_fin(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1)
    peer.send("A")
    peer.send("FA")
    peer.expect("A", ack=2)
    peer.send("FA", seq=1)  # our FIN again, as if their ACK had been lost
    peer.expect("A", ack=2, what="TIME-WAIT ACKs the retransmitted FIN")
    peer.expect_none("R", window=QUIET)


@requires("tcp.retransmission")
def test_unacknowledged_fin_is_retransmitted(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    first = peer.expect("FA", seq=1)
    again = peer.expect("FA", seq=1, timeout=3.0, what="the FIN again")
    assert float(again.time) - float(first.time) >= 0.15


def test_close_with_unread_data_resets(dut: DUT, tb: Testbench) -> None:
    # RFC 2525 2.17, and Linux: closing with unread data sends RST, not FIN
    peer, conn, _ = open_passive(dut, tb)
    peer.send("PA", b"never read")
    peer.expect("A", ack=11)
    dut.close(conn)
    rst = peer.expect(where=lambda p: bool(int(p[TCP].flags) & 0x04), what="RST")
    assert peer.dut_rel(rst[TCP].seq) == 1


def test_abort_sends_rst(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.abort(s)
    rst = peer.expect(where=lambda p: bool(int(p[TCP].flags) & 0x04), what="RST")
    assert peer.dut_rel(rst[TCP].seq) == 1


def test_data_after_close_is_answered_with_rst(dut: DUT, tb: Testbench) -> None:
    # RFC 1122 4.2.2.13 / RFC 9293: data for a connection the application closed
    peer, conn, _ = open_passive(dut, tb)
    dut.close(conn)
    peer.expect("FA", seq=1)
    peer.send("A")
    peer.send("PA", b"too late")
    peer.expect(where=lambda p: bool(int(p[TCP].flags) & 0x04), what="RST")

"""Resets per state (RFC 9293 3.10.7) and blind-attack mitigations (RFC 5961)."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import TCP

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import DUT_PORT, TCPPeer, listen, open_passive
from layers.conformance.testbench import Testbench

pytestmark = requires("tcp", "tcp.rst_rules")

QUIET = 0.3
CLOSED_PORT = 8181


# --- CLOSED (no connection) ----------------------------------------------------------------


def test_syn_to_closed_port_gets_rst_ack(dut: DUT, tb: Testbench) -> None:
    # no ACK in the segment: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    peer = TCPPeer(tb, dut, dut_port=CLOSED_PORT)
    peer.send("S", options=peer.syn_options())
    rst = peer.expect("RA", ack=1)
    assert rst[TCP].seq == 0


def test_data_without_ack_to_closed_port_counts_its_length(dut: DUT, tb: Testbench) -> None:
    peer = TCPPeer(tb, dut, dut_port=CLOSED_PORT)
    peer.send("P", b"12345", seq=100)
    peer.expect("RA", ack=105)


def test_ack_to_closed_port_gets_rst_from_its_ack(dut: DUT, tb: Testbench) -> None:
    # ACK set: <SEQ=SEG.ACK><CTL=RST>
    peer = TCPPeer(tb, dut, dut_port=CLOSED_PORT)
    peer.dut_isn = 0x10000000
    peer.send("A", seq=5, ack=77)
    rst = peer.expect("R")
    assert rst[TCP].seq == 0x10000000 + 77


def test_rst_to_closed_port_gets_nothing(dut: DUT, tb: Testbench) -> None:
    peer = TCPPeer(tb, dut, dut_port=CLOSED_PORT)
    peer.send("R", seq=1)
    peer.expect_none(window=QUIET)


# --- LISTEN ------------------------------------------------------------------------------


def test_listener_ignores_rst(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.send("R", seq=1)
    peer.expect_none(window=QUIET)
    peer.connect()


def test_listener_answers_ack_with_rst(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.dut_isn = 0x20000000
    peer.send("A", seq=1, ack=500)
    rst = peer.expect("R")
    assert rst[TCP].seq == 0x20000000 + 500


# --- SYN-RECEIVED ------------------------------------------------------------------------


def test_rst_in_syn_received_abandons_the_handshake(dut: DUT, tb: Testbench) -> None:
    lsock = listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.send("S", options=peer.syn_options())
    peer.expect("SA", ack=1)
    peer.send("R")  # seq = ISN+1: in window
    tb.sleep(0.05)
    peer.send("A")  # would have completed the handshake
    peer.expect("R", what="no connection any more: RST")
    assert dut.accept(lsock, timeout=QUIET) is None


# --- synchronized states -----------------------------------------------------------------


def test_rst_at_rcv_nxt_resets_established(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("R")
    with pytest.raises(OSError) as exc:
        dut.recv(conn, timeout=1.0)
    assert exc.value.errno == errno.ECONNRESET


def test_rst_with_ack_at_rcv_nxt_resets_established(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("RA")
    with pytest.raises(OSError) as exc:
        dut.recv(conn, timeout=1.0)
    assert exc.value.errno == errno.ECONNRESET


@requires("tcp.challenge_ack")
def test_in_window_rst_gets_challenge_ack(dut: DUT, tb: Testbench) -> None:
    # RFC 5961 3.2: in the window but not exactly RCV.NXT: challenge ACK, no reset
    peer, conn, _ = open_passive(dut, tb)
    peer.send("R", seq=peer.snd_rel + 100)
    peer.expect("A", ack=peer.snd_rel, seq=1, what="challenge ACK")
    peer.send("PA", b"still here")
    peer.expect("A", ack=peer.snd_rel)
    assert dut.recv(conn) == b"still here"


def test_out_of_window_rst_is_ignored(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("R", seq=peer.snd_rel + 0x40000000)
    peer.expect_none("R", window=QUIET)
    peer.send("PA", b"alive")
    peer.expect("A", ack=peer.snd_rel)
    assert dut.recv(conn) == b"alive"


@requires("tcp.challenge_ack")
def test_syn_in_established_gets_challenge_ack(dut: DUT, tb: Testbench) -> None:
    # RFC 5961 4.2: any SYN in a synchronized state: challenge ACK, the connection stays
    peer, conn, _ = open_passive(dut, tb)
    peer.send("S", seq=peer.snd_rel + 1000, options=peer.syn_options())
    peer.expect("A", ack=peer.snd_rel, what="challenge ACK")
    peer.expect_none("R", window=QUIET)
    peer.send("PA", b"same connection")
    peer.expect("A", ack=peer.snd_rel)
    assert dut.recv(conn) == b"same connection"


@requires("tcp.state")
def test_rst_in_close_wait_removes_the_connection(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("FA")
    peer.expect("A", ack=peer.snd_rel)
    assert dut.recv(conn) == b""
    assert dut.state(conn) == "CLOSE-WAIT"
    peer.send("R")
    tb.sleep(0.05)
    peer.send("PA", b"anyone?", seq=peer.snd_rel)
    peer.expect("R", what="the connection is gone: RST")


def test_rst_in_fin_wait_2_removes_the_connection(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    dut.shutdown(conn, "wr")
    peer.expect("FA", seq=1)
    peer.send("A")
    tb.sleep(0.05)
    peer.send("R")
    tb.sleep(0.05)
    peer.send("PA", b"anyone?")
    peer.expect("R", what="the connection is gone: RST")

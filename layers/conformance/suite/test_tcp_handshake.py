"""TCP connection establishment and option negotiation (RFC 9293 3.5, RFC 7323, RFC 2018)."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import IP, TCP

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import DUT_PORT, TCPPeer, listen, open_active, open_passive, option
from layers.conformance.testbench import Testbench

pytestmark = requires("tcp")


def test_syn_ack_answers_syn(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.send("S", options=peer.syn_options())
    synack = peer.expect("SA", ack=1)
    assert synack[IP].src == dut.ip and synack[TCP].dport == peer.port
    assert synack[TCP].window > 0


@requires("tcp.mss")
def test_syn_ack_carries_mss(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    synack = peer.connect(peer.syn_options(mss=1460))
    mss = option(synack, "MSS")
    assert mss is not None and 536 <= mss <= 1460, mss


def test_no_options_offered_none_answered(dut: DUT, tb: Testbench) -> None:
    # RFC 7323 2.2/3.2 and RFC 2018: window scale, timestamps and SACK only if the SYN had them
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    synack = peer.connect(options=[])
    assert option(synack, "WScale") is None
    assert option(synack, "Timestamp") is None
    assert option(synack, "SAckOK") is None


@requires("tcp.window_scaling")
def test_window_scale_negotiated(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    synack = peer.connect(peer.syn_options(wscale=7))
    shift = option(synack, "WScale")
    assert shift is not None and 0 <= shift <= 14, shift
    # RFC 7323 2.2: the window of a SYN or SYN-ACK is never scaled
    assert synack[TCP].window > 0


@requires("tcp.timestamps")
def test_timestamps_negotiated_and_echoed(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    opts = [("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (123456, 0))]
    synack = peer.connect(opts)
    ts = option(synack, "Timestamp")
    assert ts is not None and ts[1] == 123456, ts
    # once negotiated, segments carry timestamps that echo ours
    peer.send("PA", b"timestamps")
    ack = peer.expect("A", ack=1 + len(b"timestamps"))
    ts2 = option(ack, "Timestamp")
    assert ts2 is not None and ts2[1] == peer.last_tsval, (ts2, peer.last_tsval)


@requires("tcp.sack")
def test_sack_permitted_negotiated(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    synack = peer.connect(peer.syn_options(sack=True))
    assert option(synack, "SAckOK") is not None


@requires("tcp.mss")
def test_peer_mss_limits_segments(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb, options=[("MSS", 536)])
    data = bytes(range(256)) * 12
    dut.send(conn, data)
    got = b""
    while len(got) < len(data):
        seg = peer.expect("A", data=True, what="data segment")
        assert len(seg[TCP].payload) <= 536
        got += bytes(seg[TCP].payload)[: len(data) - len(got)]
        peer.send("A")
    assert got == data


@requires("tcp.mss")
def test_default_mss_without_option_is_536(dut: DUT, tb: Testbench) -> None:
    # RFC 9293 3.7.1 / RFC 1122 4.2.2.6: no MSS option means 536
    peer, conn, _ = open_passive(dut, tb, options=[])
    dut.send(conn, bytes(2000))
    seg = peer.expect("A", data=True)
    assert len(seg[TCP].payload) <= 536


@requires("tcp.mss")
def test_large_peer_mss_is_clamped_to_the_link(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb, options=[("MSS", 9000)])
    dut.send(conn, bytes(6000))
    seg = peer.expect("A", data=True)
    assert len(seg[IP]) <= 1500


@requires("tcp.mss")
def test_active_open_sends_syn_with_mss(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9090)
    peer = TCPPeer(tb, dut, port=9090)
    syn = peer.expect("S")
    assert syn[TCP].ack == 0 or not int(syn[TCP].flags) & 0x10
    mss = option(syn, "MSS")
    assert mss is not None and 536 <= mss <= 1460, mss
    assert syn[TCP].window > 0


def test_active_open_completes_and_carries_data(dut: DUT, tb: Testbench) -> None:
    peer, s, _ = open_active(dut, tb)
    dut.send(s, b"client hello")
    assert peer.recv_data(12) == b"client hello"
    peer.send("PA", b"server hello")
    peer.expect("A", ack=1 + 12)
    assert dut.recv(s, timeout=1.0) == b"server hello"


def test_passive_open_completes_and_carries_data(dut: DUT, tb: Testbench) -> None:
    peer, conn, _ = open_passive(dut, tb)
    peer.send("PA", b"ping")
    peer.expect("A", ack=5)
    assert dut.recv(conn) == b"ping"
    dut.send(conn, b"pong")
    assert peer.recv_data(4) == b"pong"


def test_active_open_refused_by_reset(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9091)
    peer = TCPPeer(tb, dut, port=9091)
    peer.expect("S")
    peer.send("RA", ack=1, seq=0)
    with pytest.raises(OSError) as exc:
        dut.wait_connected(s, timeout=1.0)
    assert exc.value.errno == errno.ECONNREFUSED


@requires("tcp.rst_rules")
def test_syn_sent_ignores_reset_without_ack(dut: DUT, tb: Testbench) -> None:
    # RFC 9293 3.10.7.3 SYN-SENT: a RST without ACK is dropped
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9092)
    peer = TCPPeer(tb, dut, port=9092)
    peer.expect("S")
    peer.send("R", seq=0)
    tb.sleep(0.05)
    peer.send("SA", options=peer.syn_options())
    peer.expect("A", ack=1)
    assert dut.wait_connected(s, timeout=1.0)


@requires("tcp.rst_rules")
def test_syn_sent_unacceptable_ack_gets_reset(dut: DUT, tb: Testbench) -> None:
    # RFC 9293 3.10.7.3: SEG.ACK outside (ISS, SND.NXT]: <SEQ=SEG.ACK><CTL=RST>, stay put
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9093)
    peer = TCPPeer(tb, dut, port=9093)
    peer.expect("S")
    peer.send("SA", ack=1000, options=peer.syn_options())
    rst = peer.expect("R", what="RST for the bad ACK")
    assert rst[TCP].seq == (peer.dut_isn or 0) + 1000 & 0xFFFFFFFF
    peer.snd_nxt = peer.isn
    peer.send("SA", ack=1, options=peer.syn_options())
    peer.expect("A", ack=1)
    assert dut.wait_connected(s, timeout=1.0)


def test_accepted_connection_reports_peer(dut: DUT, tb: Testbench) -> None:
    lsock = listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.connect()
    got = dut.accept(lsock)
    assert got is not None and got[1] == (tb.ip, peer.port)

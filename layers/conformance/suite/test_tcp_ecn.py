"""ECN in TCP (RFC 3168 section 6), with the DUT's ``tcp.ecn=1`` (Linux: net.ipv4.tcp_ecn=1):
the ECN-setup SYN and SYN-ACK, ECT(0) on new data and never on SYNs or pure ACKs, and the
receiver's ECE from a CE mark until the sender's CWR."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Packet

from layers.conformance import requires, settings
from layers.conformance.duts.base import DUT
from layers.conformance.tcp import DUT_PORT, TCPPeer, listen
from layers.conformance.testbench import Testbench

pytestmark = [requires("tcp", "tcp.ecn"), settings({"tcp.ecn": 1})]

ECE, CWR = 0x40, 0x80
NOT_ECT, ECT0, CE = 0, 2, 3


def ecn(pkt: Packet) -> int:
    return int(pkt[IP].tos) & 3


def tcp_flags(pkt: Packet) -> int:
    return int(pkt[TCP].flags)


def ecn_connection(dut: DUT, tb: Testbench) -> tuple[TCPPeer, int, Packet]:
    """The testbench opens with an ECN-setup SYN; the DUT accepts. (peer, socket, SYN-ACK)."""
    lsock = listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    peer.send("SEC", options=peer.syn_options())
    synack = peer.expect("SA", ack=1, what="SYN-ACK")
    peer.send("A")
    got = dut.accept(lsock, timeout=2.0)
    assert got is not None, f"DUT {dut.name} did not accept the connection"
    return peer, got[0], synack


def test_ecn_setup_syn_gets_an_ecn_setup_synack(dut: DUT, tb: Testbench) -> None:
    _, _, synack = ecn_connection(dut, tb)
    # RFC 3168 6.1.1: ECE set, CWR clear; and a SYN-ACK is never ECT
    assert tcp_flags(synack) & (ECE | CWR) == ECE, synack[TCP].flags
    assert ecn(synack) == NOT_ECT


def test_plain_syn_gets_a_plain_synack(dut: DUT, tb: Testbench) -> None:
    listen(dut)
    peer = TCPPeer(tb, dut, dut_port=DUT_PORT)
    synack = peer.connect()
    assert tcp_flags(synack) & (ECE | CWR) == 0, synack[TCP].flags


def test_active_open_asks_for_ecn(dut: DUT, tb: Testbench) -> None:
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9091)
    peer = TCPPeer(tb, dut, port=9091)
    syn = peer.expect("S", what="SYN from the DUT")
    assert tcp_flags(syn) & (ECE | CWR) == ECE | CWR, syn[TCP].flags
    assert ecn(syn) == NOT_ECT


@pytest.mark.parametrize("agree", [True, False], ids=["agreed", "refused"])
def test_data_is_ect0_only_when_agreed(dut: DUT, tb: Testbench, agree: bool) -> None:
    s = dut.socket("tcp")
    dut.connect(s, tb.ip, 9092)
    peer = TCPPeer(tb, dut, port=9092)
    syn = peer.expect("S", what="SYN from the DUT")
    peer.send("SAE" if agree else "SA", options=peer.syn_options())
    ack = peer.expect("A", ack=1, what="the DUT's ACK of our SYN-ACK")
    assert ecn(ack) == NOT_ECT and tcp_flags(syn) & ECE
    assert dut.wait_connected(s, timeout=2.0)
    dut.send(s, b"ect data")
    data = peer.expect("A", data=True, what="data segment")
    assert ecn(data) == (ECT0 if agree else NOT_ECT)


def test_pure_acks_are_not_ect(dut: DUT, tb: Testbench) -> None:
    peer, _, _ = ecn_connection(dut, tb)
    peer.send("PA", b"x" * 100, tos=ECT0)
    ack = peer.expect("A", ack=1 + 100, data=False, what="ACK of our data")
    assert ecn(ack) == NOT_ECT


def test_ce_is_echoed_with_ece_until_cwr(dut: DUT, tb: Testbench) -> None:
    peer, _, _ = ecn_connection(dut, tb)
    sent = 0
    peer.send("PA", b"a" * 100, tos=CE)
    sent += 100
    ack = peer.expect("A", ack=1 + sent, what="ACK of the CE-marked data")
    assert tcp_flags(ack) & ECE, ack[TCP].flags
    # later ACKs keep echoing, marked data or not, until the sender says CWR
    for _ in range(2):
        peer.send("PA", b"b" * 100, tos=ECT0)
        sent += 100
        ack = peer.expect("A", ack=1 + sent, what="ACK while CWR is awaited")
        assert tcp_flags(ack) & ECE, ack[TCP].flags
    peer.send("PAC", b"c" * 100, tos=ECT0)
    sent += 100
    ack = peer.expect("A", ack=1 + sent, what="ACK of the CWR segment")
    assert not tcp_flags(ack) & ECE, ack[TCP].flags

"""ICMP echo and errors (RFC 792, RFC 1122 3.2.2)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from layers.conformance import requires
from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench

pytestmark = requires("icmp.echo")


def test_echo_reply_keeps_payload(dut: DUT, tb: Testbench) -> None:
    payload = bytes(range(256)) * 2
    reply = tb.ping(payload, ident=0x1234, seq=7)
    assert bytes(reply[ICMP].payload) == payload
    assert reply[ICMP].code == 0

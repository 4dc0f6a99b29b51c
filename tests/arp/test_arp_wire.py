"""The ARP wire format against scapy, its validation, and a parser fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether

from layers.errors import MalformedPacket
from layers.wire import ARPOP_REPLY, ARPOP_REQUEST, ARPPacket, build_arp, ip4, mac, mac_str

A_MAC = mac("02:00:00:00:00:01")
B_MAC = mac("02:00:00:00:00:02")


def test_request_decoded_by_scapy() -> None:
    p = ARPPacket(ARPOP_REQUEST, A_MAC, ip4("10.0.0.1"), b"\x00" * 6, ip4("10.0.0.2"))
    s = ARP(p.to_bytes())
    assert (s.hwtype, s.ptype, s.hwlen, s.plen, s.op) == (1, 0x0800, 6, 4, 1)
    assert s.hwsrc == mac_str(A_MAC)
    assert s.psrc == "10.0.0.1"
    assert s.hwdst == "00:00:00:00:00:00"
    assert s.pdst == "10.0.0.2"
    assert str(p) == "ARP who-has 10.0.0.2 tell 10.0.0.1"


def test_reply_decoded_by_scapy() -> None:
    data = build_arp(ARPOP_REPLY, B_MAC, ip4("10.0.0.2"), A_MAC, ip4("10.0.0.1"))
    s = ARP(data)
    assert s.op == 2
    assert (s.hwsrc, s.psrc) == (mac_str(B_MAC), "10.0.0.2")
    assert (s.hwdst, s.pdst) == (mac_str(A_MAC), "10.0.0.1")
    assert ARPPacket.from_bytes(data).to_bytes() == data


@pytest.mark.parametrize("op", [1, 2])
def test_scapy_built_packets_decoded(op: int) -> None:
    frame = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=mac_str(B_MAC))
        / ARP(op=op, hwsrc=mac_str(B_MAC), psrc="192.168.7.9", hwdst=mac_str(A_MAC),
              pdst="192.168.7.1")
    )
    # scapy's frame is 42 bytes; a wire frame is padded to 60: both must parse
    for payload in (frame[14:], frame[14:] + b"\x00" * 18):
        p = ARPPacket.from_bytes(payload)
        assert p.opcode == op
        assert (p.sender_mac, p.sender_ip) == (B_MAC, ip4("192.168.7.9"))
        assert (p.target_mac, p.target_ip) == (A_MAC, ip4("192.168.7.1"))
        assert p.to_bytes() == frame[14:42]


def test_announcement_and_probe_shapes() -> None:
    ann = ARPPacket.from_bytes(bytes(ARP(op=1, hwsrc=mac_str(A_MAC), psrc="10.1.1.1",
                                         pdst="10.1.1.1")))
    assert ann.is_gratuitous and not ann.is_probe
    probe = ARPPacket.from_bytes(bytes(ARP(op=1, hwsrc=mac_str(A_MAC), psrc="0.0.0.0",
                                           pdst="10.1.1.1")))
    assert probe.is_probe and not probe.is_gratuitous


def _valid() -> bytes:
    return build_arp(ARPOP_REQUEST, A_MAC, ip4("10.0.0.1"), b"\x00" * 6, ip4("10.0.0.2"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (_valid()[:7], "truncated"),
        (_valid()[:27], "truncated"),
        (b"\x00\x06" + _valid()[2:], "bad_hardware"),  # IEEE 802 hardware type
        (_valid()[:2] + b"\x86\xdd" + _valid()[4:], "bad_protocol"),
        (_valid()[:4] + b"\x08" + _valid()[5:], "bad_hlen"),
        (_valid()[:5] + b"\x10" + _valid()[6:], "bad_plen"),  # an IPv6-sized plen
        (_valid()[:6] + b"\x00\x03" + _valid()[8:], "bad_opcode"),  # RARP request
        (_valid()[:6] + b"\x00\x00" + _valid()[8:], "bad_opcode"),
    ],
)
def test_malformed_rejected_by_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as exc:
        ARPPacket.from_bytes(data)
    assert exc.value.reason == reason


def test_to_bytes_refuses_what_does_not_fit() -> None:
    with pytest.raises(MalformedPacket):
        ARPPacket(1, b"\x01\x02", 0, b"\x00" * 6, 0).to_bytes()
    with pytest.raises(MalformedPacket):
        ARPPacket(1, A_MAC, 1 << 32, b"\x00" * 6, 0).to_bytes()
    with pytest.raises(MalformedPacket):
        ARPPacket(1, A_MAC, 0, b"\x00" * 6, 0, hardware_type=6).to_bytes()


@given(st.binary(max_size=64))
def test_parser_fuzz(data: bytes) -> None:
    try:
        p = ARPPacket.from_bytes(data)
    except MalformedPacket:
        return
    assert p.to_bytes() == data[:28]
    assert bytes(ARP(data[:28]))[:28] == data[:28]


@given(st.sampled_from([1, 2, 3, 0xFFFF]), st.binary(min_size=18, max_size=40))
def test_parser_fuzz_valid_header(op: int, rest: bytes) -> None:
    data = b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big") + rest
    if op not in (1, 2):
        with pytest.raises(MalformedPacket):
            ARPPacket.from_bytes(data)
        return
    if len(data) < 28:
        with pytest.raises(MalformedPacket):
            ARPPacket.from_bytes(data)
        return
    p = ARPPacket.from_bytes(data)
    s = ARP(data[:28])
    assert (p.sender_mac, p.target_mac) == (bytes.fromhex(s.hwsrc.replace(":", "")),
                                            bytes.fromhex(s.hwdst.replace(":", "")))
    assert (p.sender_ip, p.target_ip) == (ip4(s.psrc), ip4(s.pdst))

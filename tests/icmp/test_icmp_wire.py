"""The ICMP wire format against scapy, both ways, and its validation."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror

from layers.errors import MalformedPacket
from layers.wire import ip4, verify
from layers.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_PARAMETERPROB,
    ICMP_TIME_EXCEEDED,
    IcmpMessage,
    IcmpQuote,
    build_icmp,
    icmp_errno,
    plateau_mtu,
)


@pytest.mark.parametrize("size", [0, 1, 7, 56, 1400, 4000])
def test_echo_we_encode_scapy_decodes(size: int) -> None:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    raw = IcmpMessage.echo(0x1234, 0xBEEF, payload).to_bytes()
    pkt = ICMP(raw)
    assert pkt.type == 8 and pkt.code == 0
    assert pkt.id == 0x1234 and pkt.seq == 0xBEEF
    assert bytes(pkt.payload) == payload
    # scapy recomputes the checksum of what it decoded: it must equal ours
    assert pkt.chksum == ICMP(bytes(ICMP(type=8, id=0x1234, seq=0xBEEF) / payload)).chksum
    assert verify(raw)


@pytest.mark.parametrize("size", [0, 3, 56, 1472])
def test_echo_scapy_encodes_we_decode(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    raw = bytes(ICMP(type=0, id=77, seq=65535) / payload)
    msg = IcmpMessage.from_bytes(raw)
    assert msg.type == ICMP_ECHOREPLY and msg.ident == 77 and msg.seq == 65535
    assert msg.payload == payload
    assert msg.checksum == ICMP(raw).chksum
    assert msg.to_bytes() == raw
    assert IcmpMessage(msg.type, msg.code, msg.rest, msg.payload).to_bytes() == raw


def test_bad_checksum_and_truncation_are_malformed() -> None:
    raw = bytearray(IcmpMessage.echo(1, 2, b"hello").to_bytes())
    raw[-1] ^= 0x01
    with pytest.raises(MalformedPacket) as exc:
        IcmpMessage.from_bytes(raw)
    assert exc.value.reason == "bad_checksum"
    assert IcmpMessage.from_bytes(raw, verify_checksum=False).payload == b"hellp"[:4] + b"n"
    with pytest.raises(MalformedPacket) as exc:
        IcmpMessage.from_bytes(raw[:7])
    assert exc.value.reason == "truncated"


def test_error_with_quote_scapy_decodes() -> None:
    offending = bytes(IP(src="10.0.0.2", dst="10.0.0.1", id=99) / UDP(sport=4000, dport=53) / b"x")
    raw = IcmpMessage.error(ICMP_DEST_UNREACH, 3, offending[:28]).to_bytes()
    pkt = ICMP(raw)
    assert pkt.type == 3 and pkt.code == 3
    assert pkt[IPerror].src == "10.0.0.2" and pkt[IPerror].id == 99
    assert pkt[UDPerror].sport == 4000 and pkt[UDPerror].dport == 53


def test_scapy_error_quote_we_decode() -> None:
    inner = IP(src="10.0.0.1", dst="192.0.2.9", ttl=1, id=7) / UDP(sport=33434, dport=33435)
    raw = bytes(ICMP(type=11, code=0) / bytes(inner)[:28])
    msg = IcmpMessage.from_bytes(raw)
    assert msg.type == ICMP_TIME_EXCEEDED and msg.is_error
    q = msg.quote()
    assert (q.src, q.dst, q.protocol, q.ident, q.ttl) == (
        ip4("10.0.0.1"), ip4("192.0.2.9"), 17, 7, 1
    )
    assert q.header_length == 20 and q.data == bytes(inner)[20:28]
    # a quoted header with options
    inner = IP(src="10.0.0.1", dst="10.0.0.3", options=b"\x01\x01\x01\x00") / UDP(dport=9)
    q = IcmpQuote.from_bytes(bytes(inner)[:32])
    assert q.header_length == 24 and q.data[2:4] == (9).to_bytes(2, "big")


def test_frag_needed_and_parameter_problem_fields() -> None:
    raw = bytes(ICMP(type=3, code=4, nexthopmtu=1280) / (b"E" + bytes(27)))
    assert IcmpMessage.from_bytes(raw).mtu == 1280
    raw = bytes(ICMP(type=12, code=0, ptr=9) / bytes(28))
    msg = IcmpMessage.from_bytes(raw)
    assert msg.type == ICMP_PARAMETERPROB and msg.pointer == 9
    ours = IcmpMessage(ICMP_PARAMETERPROB, 0, 9 << 24, bytes(28)).to_bytes()
    assert ICMP(ours).ptr == 9


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(27), "quote_truncated"),
        (b"\x65" + bytes(27), "quote_bad_version"),
        (b"\x44" + bytes(27), "quote_bad_ihl"),
        (b"\x46" + bytes(27), "quote_truncated"),  # 24-byte header + 4 bytes: too short
    ],
)
def test_bad_quotes(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as exc:
        IcmpQuote.from_bytes(data)
    assert exc.value.reason == reason


def test_errno_table_matches_what_sockets_see() -> None:
    assert icmp_errno(3, 0) == errno.ENETUNREACH
    assert icmp_errno(3, 1) == errno.EHOSTUNREACH
    assert icmp_errno(3, 2) == errno.ENOPROTOOPT
    assert icmp_errno(3, 3) == errno.ECONNREFUSED
    assert icmp_errno(3, 4) == errno.EMSGSIZE
    assert icmp_errno(3, 13) == errno.EHOSTUNREACH
    assert icmp_errno(3, 99) == errno.EHOSTUNREACH
    assert icmp_errno(11, 0) == errno.EHOSTUNREACH
    assert icmp_errno(12, 0) == errno.EPROTO


def test_plateaus() -> None:
    assert plateau_mtu(1500) == 1492
    assert plateau_mtu(1492) == 1006
    assert plateau_mtu(60) == 68


def test_build_icmp_matches_attrs_path() -> None:
    assert bytes(build_icmp(ICMP_ECHO, 0, (5 << 16) | 6, b"abc")) == IcmpMessage.echo(
        5, 6, b"abc"
    ).to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parsers_raise_only_malformed(data: bytes) -> None:
    for parse in (IcmpMessage.from_bytes, IcmpQuote.from_bytes):
        try:
            parse(data)
        except MalformedPacket:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFFFFFF), st.binary(max_size=200)
)
def test_round_trip_any_message(t: int, code: int, rest: int, payload: bytes) -> None:
    raw = IcmpMessage(t, code, rest, payload).to_bytes()
    assert verify(raw)
    back = IcmpMessage.from_bytes(raw)
    assert (back.type, back.code, back.rest, back.payload) == (t, code, rest, payload)

"""The UDP wire format against scapy, both ways, including the zero-checksum rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP

from layers.errors import MalformedPacket
from layers.wire import build_ipv4_header, ip4, ip4_str
from layers.wire.checksum import checksum, pseudo_header_sum
from layers.wire.udp import UDPHeader, build_udp, udp_checksum, udp_checksum_ok

SRC, DST = ip4("10.0.0.1"), ip4("10.0.0.2")


def scapy_checksum(segment: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> int:
    """The checksum scapy computes for this segment (its own post_build, field cleared)."""
    pkt = IP(src=src, dst=dst) / UDP(segment)
    pkt[UDP].chksum = None
    return int(IP(bytes(pkt))[UDP].chksum)


@pytest.mark.parametrize("size", [0, 1, 2, 7, 512, 1472, 9000])
def test_we_encode_scapy_decodes(size: int) -> None:
    payload = bytes((i * 13 + 5) & 0xFF for i in range(size))
    seg = bytes(build_udp(SRC, DST, 40000, 53, payload))
    pkt = IP(bytes(build_ipv4_header(SRC, DST, 17, len(seg))) + seg)
    udp = pkt[UDP]
    assert (udp.sport, udp.dport, udp.len) == (40000, 53, 8 + size)
    assert bytes(udp.payload) == payload
    assert udp.chksum == scapy_checksum(seg)
    assert udp_checksum_ok(SRC, DST, seg)


@pytest.mark.parametrize("size", [0, 1, 100, 1472])
def test_scapy_encodes_we_decode(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=5678) / payload)
    seg = raw[20:]
    hdr = UDPHeader.from_bytes(seg)
    assert (hdr.sport, hdr.dport, hdr.length) == (1234, 5678, 8 + size)
    assert udp_checksum_ok(SRC, DST, seg)
    assert hdr.build(SRC, DST, payload) == seg
    assert UDPHeader(1234, 5678).build(SRC, DST, payload) == seg


def _payload_with_zero_checksum() -> bytes:
    # With payload word w, the sum is s0 + w; choosing w = ~s0 makes the sum all ones, so the
    # computed checksum is 0, which must go on the wire as 0xFFFF.
    c0 = checksum(bytes(build_udp(SRC, DST, 1, 2, b"\x00\x00", with_checksum=False)),
                  pseudo_header_sum(SRC, DST, 17, 10))
    return c0.to_bytes(2, "big")


def test_computed_zero_is_sent_as_ffff_like_scapy() -> None:
    payload = _payload_with_zero_checksum()
    seg = bytes(build_udp(SRC, DST, 1, 2, payload))
    assert seg[6:8] == b"\xff\xff"
    assert udp_checksum(SRC, DST, bytes(build_udp(SRC, DST, 1, 2, payload, with_checksum=False))) \
        == 0xFFFF
    assert scapy_checksum(seg) == 0xFFFF  # scapy applies the same RFC 768 rule
    assert udp_checksum_ok(SRC, DST, seg)


def test_zero_checksum_means_none() -> None:
    seg = bytearray(build_udp(SRC, DST, 9, 10, b"abc", with_checksum=False))
    assert seg[6:8] == b"\x00\x00"
    assert udp_checksum_ok(SRC, DST, seg)
    seg[-1] ^= 0xFF  # corruption cannot be detected without a checksum
    assert udp_checksum_ok(SRC, DST, seg)


def test_bad_checksum_detected() -> None:
    seg = bytearray(build_udp(SRC, DST, 9, 10, b"hello"))
    seg[-1] ^= 0x01
    assert not udp_checksum_ok(SRC, DST, seg)
    assert not udp_checksum_ok(SRC, DST ^ 1, bytes(build_udp(SRC, DST, 9, 10, b"hello")))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00" * 7, "truncated"),
        (b"\x00\x01\x00\x02\x00\x07\x00\x00", "bad_length"),  # length below the header
        (b"\x00\x01\x00\x02\x00\x10\x00\x00abc", "bad_length"),  # longer than present
    ],
)
def test_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as exc:
        UDPHeader.from_bytes(raw)
    assert exc.value.reason == reason


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=600),
)
def test_checksum_agrees_with_scapy(src: int, dst: int, sport: int, dport: int,
                                    payload: bytes) -> None:
    seg = bytes(build_udp(src, dst, sport, dport, payload))
    assert int.from_bytes(seg[6:8], "big") == scapy_checksum(seg, ip4_str(src), ip4_str(dst))
    assert udp_checksum_ok(src, dst, seg)

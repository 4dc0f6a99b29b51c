"""Checksum and IPv4 header against scapy as an independent oracle."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.utils import checksum as scapy_checksum

from layers.errors import ConfigurationError, MalformedPacket
from layers.wire import (
    IPv4Header,
    build_ipv4_header,
    checksum,
    ip4,
    ip4_network,
    ip4_str,
    mac,
    mac_str,
    ones_sum,
    pseudo_header_sum,
    verify,
)


@given(st.binary(max_size=3000))
def test_checksum_matches_scapy(data: bytes) -> None:
    assert checksum(data) == scapy_checksum(data)


def reference_ones_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 word by word: big-endian 16-bit words (an odd last byte padded with zero),
    end-around carries folded back in; 0 only for an all-zero sum."""
    if len(data) % 2:
        data += b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=5000), st.integers(min_value=0, max_value=(1 << 40)))
def test_ones_sum_matches_the_word_by_word_reference(data: bytes, initial: int) -> None:
    assert ones_sum(data, initial) == reference_ones_sum(data, initial)
    assert ones_sum(memoryview(data), initial) == reference_ones_sum(data, initial)
    assert ones_sum(bytearray(data)) == reference_ones_sum(data)


@given(st.integers(min_value=0, max_value=65536), st.integers(min_value=0, max_value=2**32),
       st.sampled_from(["random", "zeros", "ones"]))
def test_ones_sum_of_large_buffers_matches_the_reference(size: int, seed: int,
                                                         kind: str) -> None:
    """Sizes up to a 64 KiB super-segment, where the remainder is folded several times;
    all-ones buffers sum to a non-zero multiple of 0xFFFF (0xFFFF, never 0)."""
    data = {"random": random.Random(seed).randbytes(size), "zeros": bytes(size),
            "ones": b"\xff" * size}[kind]
    view = memoryview(bytes(3) + data)[3:]  # a view at an odd offset, as frames come
    assert ones_sum(view, seed & 0xFFFF) == reference_ones_sum(data, seed & 0xFFFF)


def test_checksum_known_vector() -> None:
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (ones' complement)
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_checksum_all_ones_and_zero() -> None:
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\x00\x00") == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert checksum(b"\xff\xff") == 0


@given(st.binary(min_size=0, max_size=200))
def test_verify_accepts_own_checksum(data: bytes) -> None:
    if len(data) % 2:
        data += b"\x00"
    csum = checksum(data)
    assert verify(data + struct.pack("!H", csum))


def test_pseudo_header_matches_scapy_udp() -> None:
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=53) / b"hello world"
    raw = bytes(pkt)
    udp = raw[20:]
    initial = pseudo_header_sum(ip4("10.0.0.1"), ip4("10.0.0.2"), 17, len(udp))
    assert verify(udp, initial)


def test_ipv4_header_roundtrip_with_scapy() -> None:
    head = IPv4Header(
        src=ip4("192.0.2.1"), dst=ip4("192.0.2.99"), protocol=17, ttl=33, ident=0x1234, flags=0x4000
    )
    raw = head.to_bytes(payload_length=8) + b"\x00" * 8
    decoded = IP(raw)
    assert decoded.src == "192.0.2.1" and decoded.dst == "192.0.2.99"
    assert decoded.ttl == 33 and decoded.id == 0x1234 and decoded.flags == "DF"
    assert decoded.len == 28
    recomputed = IP(bytes(decoded))
    del recomputed.chksum
    assert IP(bytes(recomputed)).chksum == decoded.chksum

    theirs = bytes(
        IP(
            src="10.1.2.3",
            dst="10.3.2.1",
            ttl=7,
            id=99,
            flags="MF",
            frag=3,
            options=b"\x01\x01\x01\x00",
        )
        / (b"x" * 40)
    )
    parsed = IPv4Header.from_bytes(theirs)
    assert ip4_str(parsed.src) == "10.1.2.3" and parsed.ttl == 7 and parsed.ident == 99
    assert parsed.more_fragments and parsed.frag_offset == 3
    assert parsed.header_length == 24 and parsed.total_length == 64


def test_fast_header_builder_matches_attrs_builder() -> None:
    fast = build_ipv4_header(ip4("10.0.0.1"), ip4("10.0.0.2"), 6, 100, ttl=64, ident=7)
    slow = IPv4Header(src=ip4("10.0.0.1"), dst=ip4("10.0.0.2"), protocol=6, ident=7)
    assert bytes(fast) == slow.to_bytes(payload_length=100)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: bytes([0x65]) + b[1:], "bad_version"),
        (lambda b: bytes([0x44]) + b[1:], "bad_ihl"),
        (lambda b: bytes([0x4F]) + b[1:], "bad_ihl"),
        (lambda b: b[:2] + struct.pack("!H", 500) + b[4:], "bad_length"),
        (lambda b: b[:2] + struct.pack("!H", 10) + b[4:], "bad_length"),
        (lambda b: b[:8] + bytes([b[8] ^ 1]) + b[9:], "bad_checksum"),
    ],
)
def test_ipv4_header_rejects(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    good = bytes(IP(src="1.2.3.4", dst="5.6.7.8") / (b"p" * 20))
    with pytest.raises(MalformedPacket) as info:
        IPv4Header.from_bytes(mutate(good))
    assert info.value.reason == reason


def test_address_parsing_errors_name_the_fix() -> None:
    assert ip4("10.0.0.1") == 0x0A000001
    assert ip4_network("10.0.0.7/24") == (0x0A000007, 24)
    assert mac_str(mac("02:00:00:aa:bb:cc")) == "02:00:00:aa:bb:cc"
    with pytest.raises(ConfigurationError, match=r"a\.b\.c\.d"):
        ip4("10.0.1")
    with pytest.raises(ConfigurationError, match="prefix length"):
        ip4_network("10.0.0.1")
    with pytest.raises(ConfigurationError, match="aa:bb"):
        mac("zz:00")

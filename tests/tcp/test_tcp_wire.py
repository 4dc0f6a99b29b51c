"""The TCP wire format against scapy (both ways), and hypothesis: random segments, random
options and mutated valid segments never raise out of receive()."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from tcp_support import PA, PEER, PEER_PORT, PLAIN, US, A, Wire

from layers.errors import MalformedPacket
from layers.links.base import RX_CSUM_VERIFIED
from layers.wire import ip4
from layers.wire.tcp import (
    TCPHeader,
    TCPOptions,
    parse_options,
    parse_timestamps,
    tcp_checksum_ok,
    tcp_partial_checksum,
)

SRC, DST = ip4(US), ip4(PEER)


def test_scapy_decodes_what_we_send() -> None:
    w = Wire({"tcp.sack": True})
    w.listen(80)
    w.inject(2, 1000, opts=TCPOptions(mss=1400, wscale=3, sack_permitted=True,
                                      timestamp=(5, 0)))
    (frame,) = w.raw_sent()
    pkt = IP(frame)
    assert pkt[TCP].flags == "SA" and pkt[TCP].ack == 1001
    opts = dict((k, v) for k, v in pkt[TCP].options)
    assert opts["MSS"] == 1460 and "SAckOK" in opts and opts["Timestamp"][1] == 5
    assert opts["WScale"] >= 1
    want = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert IP(bytes(pkt))[TCP].chksum == want


def test_we_decode_what_scapy_builds() -> None:
    seg = TCP(sport=1234, dport=80, seq=7, ack=9, flags="PA", window=512,
              options=[("MSS", 1200), ("NOP", None), ("WScale", 6), ("SAckOK", b""),
                       ("Timestamp", (11, 22)), ("SAck", (100, 200, 300, 400))]) / b"data"
    raw = bytes(IP(src=US, dst=PEER) / seg)[20:]
    h = TCPHeader.from_bytes(raw, src=SRC, dst=DST)
    assert (h.sport, h.dport, h.seq, h.ack, h.window) == (1234, 80, 7, 9, 512)
    assert h.options.mss == 1200 and h.options.wscale == 6 and h.options.sack_permitted
    assert h.options.timestamp == (11, 22)
    assert h.options.sack == ((100, 200), (300, 400))
    assert raw[h.header_length:] == b"data"
    assert parse_timestamps(raw[20 : h.header_length]) == (11, 22)


def test_our_header_round_trips_through_scapy() -> None:
    h = TCPHeader(5, 6, seq=2**32 - 1, ack=3, flags=0x18, window=100,
                  options=TCPOptions(timestamp=(1, 2), sack=((10, 20),)))
    raw = h.to_bytes(b"payload", src=SRC, dst=DST)
    pkt = TCP(raw)
    assert pkt.seq == 2**32 - 1 and pkt.flags == "PA"
    assert tcp_checksum_ok(SRC, DST, raw)
    assert TCPHeader.from_bytes(raw, src=SRC, dst=DST).options == h.options


def test_partial_checksum_completes_to_the_full_one() -> None:
    from layers.wire.checksum import checksum

    h = TCPHeader(5, 6, seq=1, ack=2, flags=0x10, window=100, checksum=0)
    raw = bytearray(h.to_bytes(b"abc" * 100))
    part = tcp_partial_checksum(SRC, DST, len(raw))
    raw[16:18] = part.to_bytes(2, "big")
    full = checksum(raw)  # what a NIC does from csum_start
    raw[16:18] = full.to_bytes(2, "big")
    assert tcp_checksum_ok(SRC, DST, raw)


def test_parse_errors() -> None:
    with pytest.raises(MalformedPacket) as info:
        TCPHeader.from_bytes(b"\x00" * 10)
    assert info.value.reason == "truncated"
    bad = bytearray(TCPHeader(1, 2).to_bytes(src=SRC, dst=DST))
    bad[12] = 0x40  # data offset 4
    with pytest.raises(MalformedPacket) as info:
        TCPHeader.from_bytes(bad)
    assert info.value.reason == "bad_offset"
    for block in (b"\x02\x05\x00\x00\x00", b"\x08\x03\x00", b"\x03", b"\x05\x09" + b"\0" * 7):
        with pytest.raises(MalformedPacket):
            parse_options(block)


def test_bad_checksum_dropped_unless_link_verified() -> None:
    w = Wire(PLAIN)
    w.listen(80)
    raw = bytearray(TCPHeader(PEER_PORT, 80, 1000, 0, 2, 65535).to_bytes(src=DST, dst=SRC))
    raw[17] ^= 0xFF
    w.inject_raw(bytes(raw))
    w.nothing()
    assert w.counters.drops["bad_checksum"] == 1 and w.counters["InCsumErrors"] == 1
    w.inject_raw(bytes(raw), flags=RX_CSUM_VERIFIED)
    assert w.one().flags == 0x12  # the link vouched for it: no checksum work, answered


@st.composite
def options(draw: st.DrawFn) -> TCPOptions:
    return TCPOptions(
        mss=draw(st.none() | st.integers(0, 0xFFFF)),
        wscale=draw(st.none() | st.integers(0, 255)),
        sack_permitted=draw(st.booleans()),
        timestamp=draw(st.none() | st.tuples(st.integers(0, 2**32 - 1),
                                             st.integers(0, 2**32 - 1))),
    )


@given(options())
def test_options_round_trip(o: TCPOptions) -> None:
    assert parse_options(o.to_bytes()) == o


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@_FUZZ
@given(st.binary(min_size=0, max_size=120))
def test_random_bytes_never_raise(data: bytes) -> None:
    w = Wire()
    w.listen(80)
    w.inject_raw(data, flags=RX_CSUM_VERIFIED)
    w.inject_raw(data)
    assert w.stack.counters["stack"].drops.get("internal_error", 0) == 0


@_FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, 0x1FF),  # flags
            st.integers(0, 2**32 - 1),  # seq offset
            st.integers(0, 2**32 - 1),  # ack offset
            st.binary(max_size=40),
            st.integers(0, 0xFFFF),
            st.one_of(st.none(), options()),
        ),
        max_size=12,
    )
)
def test_random_segments_into_connections_never_raise(segs: list[tuple]) -> None:
    w = Wire({"tcp.sack": True})
    conn, _proto, synack = w.accept(iss=1000, syn_opts=TCPOptions(mss=1000, sack_permitted=True,
                                                                  timestamp=(1, 0), wscale=2))
    us = synack.seq + 1
    conn.write(b"x" * 3000)
    for flags, dseq, dack, payload, wnd, o in segs:
        # mostly near the right numbers, sometimes anywhere
        seq = 1001 + (dseq % 4000 if dseq & 1 else dseq)
        ack = us + (dack % 4000 if dack & 1 else dack)
        try:
            w.inject(flags, seq, ack, payload, wnd=wnd, opts=o)
        except ValueError:
            continue  # options that do not fit in 40 bytes cannot be built
        w.advance(0.3)
    w.advance(200)
    assert w.stack.counters["stack"].drops.get("internal_error", 0) == 0
    w.sent()


def test_flag_names() -> None:
    from layers.wire.tcp import flags_str

    assert flags_str(A) == "." and flags_str(PA) == "P." and flags_str(0x12) == "S."

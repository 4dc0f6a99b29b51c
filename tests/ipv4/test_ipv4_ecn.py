"""ECN in IPv4 (RFC 3168 section 5): the ECN field passes both ways between transports and the
wire, received codepoints are counted, and reassembly keeps CE (and refuses Not-ECT mixes)."""

from __future__ import annotations

import pytest
from ipv4_support import TEST_PROTO, Harness, ip_header
from scapy.layers.inet import IP

from layers.wire.addr import ip4
from layers.wire.checksum import ones_sum
from layers.wire.ipv4 import ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT, IPv4Header

B = ip4("10.0.0.2")
DSCP_AF11 = 0x28  # a DSCP beside the ECN field: both must survive


def frag(offset: int, data: bytes, more: bool, tos: int, ident: int = 9) -> bytes:
    word = (0x2000 if more else 0) | (offset // 8)
    return ip_header("10.0.0.1", "10.0.0.2", len(data), ident=ident, frag=word,
                     tos=tos) + data


@pytest.mark.parametrize("ecn", [ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE])
def test_the_ecn_field_goes_out_and_comes_in_unchanged(ecn: int) -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, b"ecn", tos=DSCP_AF11 | ecn)
    [frame] = h.cap_a.frames
    assert IP(frame).tos == DSCP_AF11 | ecn
    assert IPv4Header.from_bytes(frame).ecn == ecn
    h.net.run_until_idle()
    [got] = h.tb().got
    assert got.tos == DSCP_AF11 | ecn


def test_received_codepoints_are_counted_like_linux_ipext() -> None:
    h = Harness()
    for ident, ecn in enumerate([ECN_NOT_ECT, ECN_ECT0, ECN_ECT0, ECN_ECT1, ECN_CE], 1):
        h.inject(ip_header("10.0.0.1", "10.0.0.2", 4, ident=ident, tos=ecn) + b"data")
    c = h.counters()
    assert (c["InECT0Pkts"], c["InECT1Pkts"], c["InCEPkts"]) == (2, 1, 1)
    assert c["InNoECTPkts"] == 0  # not counted: the common path stays free
    assert [g.tos for g in h.tb().got] == [0, 2, 2, 1, 3]


def test_every_fragment_carries_the_ecn_field() -> None:
    h = Harness()
    assert h.a.ip is not None
    assert h.a.ip.send(B, TEST_PROTO, bytes(4000), tos=ECN_ECT0)
    frames = h.cap_a.frames
    assert len(frames) == 3
    assert [IP(f).tos for f in frames] == [ECN_ECT0] * 3


@pytest.mark.parametrize("which", [0, 1, 2])
def test_ce_on_any_fragment_makes_the_datagram_ce(which: int) -> None:
    h = Harness()
    parts = [(0, b"A" * 16, True), (16, b"B" * 16, True), (32, b"C" * 5, False)]
    for i, (offset, data, more) in enumerate(parts):
        h.inject(frag(offset, data, more, DSCP_AF11 | (ECN_CE if i == which else ECN_ECT0)))
    [got] = h.tb().got
    assert got.payload == b"A" * 16 + b"B" * 16 + b"C" * 5
    assert got.tos == DSCP_AF11 | ECN_CE
    assert got.header[1] == DSCP_AF11 | ECN_CE  # the rebuilt header says so too
    assert ones_sum(got.header) == 0xFFFF
    assert h.counters()["InCEPkts"] == 1


def test_ect_fragments_without_ce_stay_as_the_first_was() -> None:
    h = Harness()
    h.inject(frag(0, b"A" * 16, True, ECN_ECT0))
    h.inject(frag(16, b"B", False, ECN_ECT1))
    [got] = h.tb().got
    assert got.tos == ECN_ECT0


@pytest.mark.parametrize("other", [ECN_ECT0, ECN_ECT1, ECN_CE])
def test_not_ect_mixed_with_ect_or_ce_discards_the_datagram(other: int) -> None:
    h = Harness()
    h.inject(frag(0, b"A" * 16, True, ECN_NOT_ECT))
    h.inject(frag(16, b"B", False, other))
    assert h.tb().got == []
    c = h.counters()
    assert c.drops["reasm_ecn_mismatch"] == 1 and c["ReasmFails"] == 1
    assert c["ReasmOKs"] == 0
    ra = h.b.protocol("ipv4").reassembler
    assert len(ra) == 0 and ra.memory == 0


def test_a_dropped_duplicate_does_not_count_towards_the_mix() -> None:
    h = Harness()
    h.inject(frag(0, b"A" * 16, True, ECN_ECT0))
    h.inject(frag(0, b"A" * 16, True, ECN_NOT_ECT))  # an exact duplicate: ignored
    h.inject(frag(16, b"B", False, ECN_ECT0))
    [got] = h.tb().got
    assert got.tos == ECN_ECT0

"""Reassembly: order, duplicates, overlaps, bounds in memory and time, ICMP time exceeded, and
scapy as an independent fragmenter."""

from __future__ import annotations

import random

import pytest
from ipv4_support import TEST_PROTO, Harness, ip_header
from layers_ipv4 import IPv4, copied_options, fragment
from scapy.layers.inet import IP
from scapy.layers.inet import fragment as scapy_fragment
from scapy.packet import Raw

from layers.links.base import RX_BROADCAST, RX_CSUM_VERIFIED
from layers.wire.addr import ip4
from layers.wire.checksum import ones_sum

PAYLOAD = bytes(random.Random(7).randbytes(2000))


def scapy_frags(payload: bytes = PAYLOAD, size: int = 400, ident: int = 77,
                dst: str = "10.0.0.2", proto: int = TEST_PROTO) -> list[bytes]:
    pkt = IP(src="10.0.0.1", dst=dst, proto=proto, id=ident) / Raw(payload)
    return [bytes(f) for f in scapy_fragment(pkt, fragsize=size)]


def frag(offset: int, data: bytes, more: bool, ident: int = 9) -> bytes:
    word = (0x2000 if more else 0) | (offset // 8)
    return ip_header("10.0.0.1", "10.0.0.2", len(data), ident=ident, frag=word) + data


def ipv4(h: Harness) -> IPv4:
    p = h.b.protocol("ipv4")
    assert isinstance(p, IPv4)
    return p


def check_whole(h: Harness, payload: bytes = PAYLOAD) -> None:
    [got] = h.tb().got
    assert got.payload == payload
    assert len(got.header) == 20
    assert int.from_bytes(got.header[2:4], "big") == 20 + len(payload)
    assert got.header[6:8] == b"\0\0"  # no MF, no offset: a whole datagram
    assert ones_sum(got.header) == 0xFFFF
    assert ipv4(h).reassembler.memory == 0 and len(ipv4(h).reassembler) == 0


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_orders(order: str) -> None:
    h = Harness()
    frags = scapy_frags()
    assert len(frags) == 5
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(frags)
    for f in frags:
        h.inject(f)
    check_whole(h)
    c = h.counters()
    assert (c["ReasmReqds"], c["ReasmOKs"], c["InDelivers"]) == (5, 1, 1)
    assert not c.drops


def test_duplicates_are_ignored() -> None:
    h = Harness()
    frags = scapy_frags()
    for f in [frags[0], frags[0], frags[2], frags[1], frags[2], frags[4], frags[3]]:
        h.inject(f)
    check_whole(h)
    c = h.counters()
    assert c["ReasmDuplicates"] == 2 and c.drops == {"reasm_duplicate": 2}


def test_an_exact_duplicate_with_other_bytes_does_not_replace_the_first() -> None:
    h = Harness()
    h.inject(frag(0, b"A" * 8, True))
    h.inject(frag(0, b"B" * 8, True))
    h.inject(frag(8, b"C", False))
    assert h.tb().got[0].payload == b"A" * 8 + b"C"


@pytest.mark.parametrize("overlap", [
    [(0, 16, True), (8, 16, True)],  # partial overlap on the right
    [(8, 16, True), (0, 16, True)],  # on the left
    [(0, 32, True), (8, 8, True)],  # contained in a held fragment
    [(8, 8, True), (0, 32, True)],  # covering a held fragment
    [(0, 16, True), (0, 8, True)],  # same start, shorter
])
def test_overlaps_discard_the_whole_datagram(overlap: list[tuple[int, int, bool]]) -> None:
    h = Harness()
    for offset, size, more in overlap:
        h.inject(frag(offset, bytes(size), more))
    c = h.counters()
    assert c["ReasmOverlaps"] == 1 and c["ReasmFails"] == 1
    assert len(ipv4(h).reassembler) == 0 and ipv4(h).reassembler.memory == 0
    h.inject(frag(32, b"end", False))  # the rest starts a new queue that cannot complete
    assert h.tb().got == []


def test_interleaved_datagrams_are_kept_apart() -> None:
    h = Harness()
    one = scapy_frags(PAYLOAD, ident=1)
    two = scapy_frags(PAYLOAD[::-1], ident=2)
    for f1, f2 in zip(one, two, strict=True):
        h.inject(f2)
        h.inject(f1)
    assert sorted(g.payload for g in h.tb().got) == sorted([PAYLOAD, PAYLOAD[::-1]])


def test_reassembled_datagram_flags_and_broadcast() -> None:
    h = Harness()
    for f in scapy_frags(dst="10.0.0.255"):
        h.inject(f, RX_CSUM_VERIFIED | RX_BROADCAST)
    [got] = h.tb().got
    assert got.broadcast and got.payload == PAYLOAD
    assert got.flags & RX_BROADCAST and not got.flags & RX_CSUM_VERIFIED


def test_first_fragment_options_stay_in_the_reassembled_header() -> None:
    h = Harness()
    opts = b"\x83\x07\x04\x01\x02\x03\x04\x00"  # LSRR (copied) + end
    pieces = fragment(ip4("10.0.0.1"), ip4("10.0.0.2"), TEST_PROTO, PAYLOAD, 600, options=opts)
    assert [p[0] & 0xF for p in pieces] == [7, 7, 7, 7]  # LSRR copied into every fragment
    for p in reversed(pieces):
        h.inject(p)
    [got] = h.tb().got
    assert got.payload == PAYLOAD and got.header[20:] == opts
    assert int.from_bytes(got.header[2:4], "big") == 28 + len(PAYLOAD)


def test_copied_options() -> None:
    rr = b"\x07\x07\x04" + bytes(4)  # record route: not copied
    lsrr = b"\x83\x07\x04" + bytes(4)  # loose source route: copied
    assert copied_options(rr + b"\x01" + lsrr + b"\x00") == lsrr + b"\x00"
    assert copied_options(b"\x01\x01\x00" + lsrr) == b""  # nothing after end of list
    assert copied_options(b"\x83\xff\x00") == b""  # length past the end: cut
    assert copied_options(b"\x83") == b""


def test_scapy_reassembles_our_fragments_with_options() -> None:
    from scapy.layers.inet import defragment

    opts = b"\x07\x07\x04" + bytes(4) + b"\x01" + b"\x83\x07\x04\x0a\x00\x00\x01" + b"\x00"
    assert len(opts) == 16
    pieces = fragment(ip4("10.0.0.1"), ip4("10.0.0.2"), TEST_PROTO, PAYLOAD, 576,
                      options=opts, ident=5)
    pkts = [IP(p) for p in pieces]
    # first: 36-byte header + 536 data; later: 28-byte header (LSRR only) + 544 data
    assert [len(p) for p in pieces[:-1]] == [572] * (len(pieces) - 1)
    assert pkts[0].ihl == 9 and all(p.ihl == 7 for p in pkts[1:])
    assert [p.frag * 8 for p in pkts[:3]] == [0, 536, 1080]
    [whole] = defragment(pkts)
    assert bytes(whole[IP].payload) == PAYLOAD


# --- time ---------------------------------------------------------------------------------


def test_timeout_with_the_first_fragment_requests_time_exceeded() -> None:
    h = Harness()
    frags = scapy_frags()
    h.inject(frags[0])
    h.inject(frags[2])
    h.net.run_for(29.9)
    assert h.ep.of(h.b).calls == [] and len(ipv4(h).reassembler) == 1
    h.net.run_for(0.2)
    [(kind, datagram, code)] = h.ep.of(h.b).calls
    assert (kind, code) == ("time_exceeded", 1)
    assert bytes(datagram.header) == frags[0][:20]
    assert bytes(datagram.payload) == frags[0][20:]
    assert (datagram.src, datagram.dst, datagram.protocol) == (
        ip4("10.0.0.1"), ip4("10.0.0.2"), TEST_PROTO)
    c = h.counters()
    assert (c["ReasmTimeout"], c["ReasmFails"]) == (1, 1)
    assert len(ipv4(h).reassembler) == 0 and ipv4(h).reassembler.memory == 0
    for f in frags[1:]:  # the rest, too late: a new queue, never complete
        h.inject(f)
    assert h.tb().got == []


def test_timeout_without_the_first_fragment_reports_nothing() -> None:
    h = Harness()
    for f in scapy_frags()[1:]:
        h.inject(f)
    h.net.run_for(31)
    assert h.ep.of(h.b).calls == []
    assert h.counters()["ReasmTimeout"] == 1


def test_timeout_is_configurable_and_not_refreshed_by_new_fragments() -> None:
    h = Harness(settings={"ipv4.reasm_timeout": 5.0})
    frags = scapy_frags()
    h.inject(frags[0])
    h.net.run_for(4)
    h.inject(frags[1])
    h.net.run_for(1.5)
    assert h.counters()["ReasmTimeout"] == 1
    assert h.ep.of(h.b).calls[0][0] == "time_exceeded"


def test_completion_cancels_the_timer() -> None:
    h = Harness()
    for f in scapy_frags():
        h.inject(f)
    h.net.run_for(60)
    assert h.counters()["ReasmTimeout"] == 0 and h.ep.of(h.b).calls == []


def test_stopping_the_stack_drops_partial_datagrams() -> None:
    h = Harness()
    h.inject(scapy_frags()[0])
    h.b.stop()
    assert len(ipv4(h).reassembler) == 0 and ipv4(h).reassembler.memory == 0


# --- bounds ---------------------------------------------------------------------------------


def test_memory_is_bounded_and_the_oldest_datagrams_go_first() -> None:
    h = Harness(settings={"ipv4.reasm_memory": 5000})
    r = ipv4(h).reassembler
    for ident in range(20):
        h.inject(frag(0, bytes(1000), True, ident=ident))
        assert r.memory <= 5000
    held = sorted(k[3] for k in r.queues)
    assert held == [16, 17, 18, 19]  # 4 x (1000 + 64) fit in 5000
    assert h.counters().drops["reasm_memory_evicted"] == 16
    h.inject(frag(1000, b"tail", False, ident=19))
    assert [len(g.payload) for g in h.tb().got] == [1004]
    h.inject(frag(1000, b"tail", False, ident=3))  # evicted long ago: incomplete
    assert len(h.tb().got) == 1


def test_a_fragment_larger_than_the_memory_limit_is_dropped() -> None:
    h = Harness(settings={"ipv4.reasm_memory": 500})
    h.inject(frag(0, bytes(1000), True))
    assert h.counters().drops["reasm_memory"] == 1 and ipv4(h).reassembler.memory == 0


def test_growing_one_datagram_past_the_limit_kills_it() -> None:
    h = Harness(settings={"ipv4.reasm_memory": 2500})
    h.inject(frag(0, bytes(1000), True))
    h.inject(frag(1000, bytes(1000), True))
    h.inject(frag(2000, bytes(1000), True))
    assert h.counters().drops["reasm_memory"] == 1
    assert len(ipv4(h).reassembler) == 0 and ipv4(h).reassembler.memory == 0


def test_reassembly_can_be_disabled() -> None:
    h = Harness(settings={"ipv4.reasm_memory": 0})
    for f in scapy_frags():
        h.inject(f)
    assert h.tb().got == [] and h.counters().drops["reassembly_disabled"] == 5


def test_largest_datagram_reassembles() -> None:
    h = Harness()
    payload = random.Random(1).randbytes(65515)
    assert h.a.ip is not None and h.a.ip.send(ip4("10.0.0.2"), TEST_PROTO, payload)
    h.net.run_until_idle()
    assert h.tb().got[0].payload == payload


def test_ping_of_death_is_refused() -> None:
    h = Harness()
    h.inject(frag(0, bytes(8), True))
    h.inject(frag(8189 * 8, bytes(100), False))  # would end at 65612 + 20
    assert h.counters().drops["reasm_oversize"] == 1
    assert len(ipv4(h).reassembler) == 0


@pytest.mark.parametrize("bad", [
    [(0, 7, True)],  # MF with a length that is not a multiple of 8
    [(0, 0, True)],  # MF and empty
])
def test_bad_fragment_lengths_are_dropped(bad: list[tuple[int, int, bool]]) -> None:
    h = Harness()
    for offset, size, more in bad:
        h.inject(frag(offset, bytes(size), more))
    assert h.counters().drops["bad_fragment"] == 1


@pytest.mark.parametrize("seq", [
    [(16, 8, False), (24, 8, False)],  # two different ends
    [(16, 8, False), (24, 8, True)],  # data past the end
    [(24, 8, True), (8, 8, False)],  # an end before data already held
])
def test_inconsistent_lengths_discard_the_datagram(seq: list[tuple[int, int, bool]]) -> None:
    h = Harness()
    for offset, size, more in seq:
        h.inject(frag(offset, bytes(size), more))
    assert h.counters().drops["bad_fragment"] == 1
    assert len(ipv4(h).reassembler) == 0 and ipv4(h).reassembler.memory == 0


def test_empty_last_fragment_completes() -> None:
    h = Harness()
    h.inject(frag(0, b"12345678", True))
    h.inject(frag(8, b"", False))
    assert [g.payload for g in h.tb().got] == [b"12345678"]


def test_unknown_protocol_after_reassembly_quotes_the_whole_header() -> None:
    h = Harness()
    for f in scapy_frags(proto=201):
        h.inject(f)
    [(kind, datagram, code)] = h.ep.of(h.b).calls
    assert (kind, code, datagram.protocol) == ("unreachable", 2, 201)
    assert int.from_bytes(bytes(datagram.header)[2:4], "big") == 2020
    assert bytes(datagram.payload) == PAYLOAD

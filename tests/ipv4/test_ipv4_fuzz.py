"""Hypothesis: nothing raises out of receive(), whatever arrives, and the books balance."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipv4_support import TEST_PROTO, Harness, ip_header
from layers_ipv4 import IPv4, fragment

from layers.links.base import RX_BROADCAST, RX_CSUM_VERIFIED
from layers.wire.addr import ip4

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
H = Harness(settings={"ipv4.reasm_memory": 20_000})
B_IP = H.b.protocol("ipv4")
assert isinstance(B_IP, IPv4)


def _feed(packet: bytes, flags: int) -> None:
    c = H.counters()
    before = (c["InReceives"], c["InDelivers"], c["dropped"], c["ReasmReqds"])
    B_IP.receive(H.ib, memoryview(packet), flags)  # must not raise
    after = (c["InReceives"], c["InDelivers"], c["dropped"], c["ReasmReqds"])
    assert after[0] == before[0] + 1
    # every packet is delivered, dropped, or filed for reassembly (or several of those when
    # a fragment completes a datagram or kills a queue)
    assert after[1:] != before[1:]
    assert B_IP.reassembler.memory <= 20_000
    assert B_IP.reassembler.memory == sum(q.cost for q in B_IP.reassembler.queues.values())


flags_st = st.sampled_from([0, RX_BROADCAST, RX_CSUM_VERIFIED])


@FUZZ
@given(data=st.binary(max_size=200), flags=flags_st)
def test_random_bytes(data: bytes, flags: int) -> None:
    _feed(data, flags)


def _valid(payload: bytes, frag: int, proto: int, dst: str, options: bytes) -> bytes:
    return ip_header("10.0.0.1", dst, len(payload), proto=proto, frag=frag,
                     options=options) + payload


valid_st = st.builds(
    _valid,
    payload=st.binary(max_size=300),
    frag=st.one_of(st.just(0), st.integers(0, 0xFFFF)),
    proto=st.sampled_from([TEST_PROTO, 200, 6, 17]),
    dst=st.sampled_from(["10.0.0.2", "10.0.0.255", "255.255.255.255", "10.0.0.3"]),
    options=st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x83\x07\x04\x01\x02\x03\x04\x00",
                             b"\x44\xff" + bytes(6)]),
)


@FUZZ
@given(packet=valid_st, flags=flags_st,
       edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 400)), pad=st.binary(max_size=30))
def test_mutated_valid_packets(packet: bytes, flags: int, edits: list[tuple[int, int]],
                               cut: int | None, pad: bytes) -> None:
    b = bytearray(packet)
    for at, value in edits:
        if at < len(b):
            b[at] = value
    if cut is not None:
        del b[cut:]
    _feed(bytes(b) + pad, flags)


@FUZZ
@given(
    payload=st.binary(min_size=1, max_size=3000),
    mtu=st.integers(68, 1500),
    order=st.randoms(use_true_random=False),
    dup=st.integers(0, 3),
    drop=st.booleans(),
)
def test_fragment_streams_reassemble_or_fail_cleanly(
    payload: bytes, mtu: int, order: object, dup: int, drop: bool
) -> None:
    import random

    assert isinstance(order, random.Random)
    ident = order.getrandbits(16)
    pieces = fragment(ip4("10.0.0.1"), ip4("10.0.0.2"), TEST_PROTO, payload, mtu, ident=ident)
    stream = pieces + [order.choice(pieces) for _ in range(dup)]
    order.shuffle(stream)
    lost = drop and len(pieces) > 1
    if lost:
        stream = [p for p in stream if p != pieces[-1]]
    got = H.tb().got
    before = len(got)
    for p in stream:
        _feed(p, 0)
    delivered = [g.payload for g in got[before:]]
    if len(pieces) == 1:
        assert delivered == [payload] * len(stream)
    elif lost:
        assert payload not in delivered
    else:
        # duplicates arriving after completion may start (and even complete) a second copy,
        # as on Linux; a duplicate before completion is ignored
        assert delivered and delivered == [payload] * len(delivered)
        if dup == 0:
            assert len(delivered) == 1
    # leftovers from duplicates arriving after completion are cleared for the next example
    B_IP.reassembler.clear()

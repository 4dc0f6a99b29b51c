"""Property tests: every wire parser and each plugin's receive path, on mutated real frames.

Nothing but MalformedPacket leaves a parser; nothing leaves ``Stack.receive``; no stack
catches an internal error; and every frame is accounted for: some counter besides the
interface's rx_frames/rx_bytes moves for it (delivered, answered, or dropped by reason).
The frames start from ones our own stacks sent (tests/fuzz/fuzz_targets.py), so mutations
reach past the checksums into each protocol.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import fuzz_targets
import pytest
from fuzz_targets import Pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers.stack import Stack
from layers.wire import build_ipv4_header, checksum

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FRAMES = fuzz_targets.recorded_frames()
PAIR = Pair()


def ledger(stack: Stack) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, c in stack.counters.items():
        out[name] = (dict(c), dict(c.drops))
    for iface in stack.interfaces:
        counters = {k: v for k, v in iface.counters.items() if k not in ("rx_frames", "rx_bytes")}
        out[f"if:{iface.name}"] = (counters, dict(iface.counters.drops))
    return out


def feed(frame: bytes) -> None:
    b = PAIR.b
    before = ledger(b)
    rx = PAIR.ib.counters["rx_frames"]
    b.receive(PAIR.ib, frame)  # must not raise
    assert PAIR.ib.counters["rx_frames"] == rx + 1
    assert ledger(b) != before, f"a frame left no trace in the counters: {frame.hex()}"
    PAIR.run(0.01)
    PAIR.check()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for at, value in edits:
        if b:
            b[at % len(b)] = value
    if cut is not None:
        del b[cut:]
    return bytes(b)


def frames_of(proto: int | None) -> list[bytes]:
    """Seed frames b received: ARP (proto None) or IPv4 carrying ``proto``."""
    if proto is None:
        return [f for f in FRAMES if f[12:14] == b"\x08\x06"]
    return [f for f in FRAMES if f[12:14] == b"\x08\x00" and f[23] == proto]


def rewrap(frame: bytes, transport: bytes) -> bytes:
    """``frame``'s Ethernet and IPv4 headers (length and checksum redone) around
    ``transport``, so the mutation reaches the transport's own receive path."""
    ihl = (frame[14] & 0x0F) * 4
    head = bytearray(frame[14:14 + ihl])
    head[2:4] = (ihl + len(transport)).to_bytes(2, "big")
    head[10:12] = b"\0\0"
    head[10:12] = checksum(head).to_bytes(2, "big")
    return frame[:14] + bytes(head) + transport


edits_st = st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6)
cut_st = st.one_of(st.none(), st.integers(0, 1600))


@FUZZ
@given(data=st.binary(max_size=300))
def test_wire_parsers_raise_only_malformed_packet(data: bytes) -> None:
    fuzz_targets.wire(data)


@FUZZ
@given(i=st.integers(0, 1000), edits=edits_st, cut=cut_st)
def test_wire_parsers_on_mutated_real_frames(i: int, edits: list[tuple[int, int]],
                                             cut: int | None) -> None:
    fuzz_targets.wire(mutate(FRAMES[i % len(FRAMES)], edits, cut))


def _transport_case(proto: int) -> Callable[[int, list[tuple[int, int]], int | None], None]:
    seeds = frames_of(proto)
    assert seeds, f"no seed frames for protocol {proto}"

    def case(i: int, edits: list[tuple[int, int]], cut: int | None) -> None:
        frame = seeds[i % len(seeds)]
        ihl = (frame[14] & 0x0F) * 4
        feed(rewrap(frame, mutate(frame[14 + ihl:], edits, cut)))

    return case


@pytest.mark.parametrize("proto", [6, 1])
@FUZZ
@given(i=st.integers(0, 1000), edits=edits_st, cut=cut_st)
def test_transport_receive_paths(proto: int, i: int, edits: list[tuple[int, int]],
                                 cut: int | None) -> None:
    _transport_case(proto)(i, edits, cut)


@FUZZ
@given(payload=st.binary(max_size=100), edits=edits_st, cut=cut_st,
       dport=st.sampled_from([53, 5001, 9]))
def test_udp_receive_path(payload: bytes, edits: list[tuple[int, int]], cut: int | None,
                          dport: int) -> None:
    udp = (40000).to_bytes(2, "big") + dport.to_bytes(2, "big") + \
        (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
    udp = mutate(udp, edits, cut)
    head = build_ipv4_header(fuzz_targets.A, fuzz_targets.B, 17, len(udp))
    feed(fuzz_targets.MAC_B + fuzz_targets.MAC_A + b"\x08\x00" + head + udp)


@FUZZ
@given(i=st.integers(0, 100), edits=edits_st, cut=cut_st)
def test_arp_receive_path(i: int, edits: list[tuple[int, int]], cut: int | None) -> None:
    seeds = frames_of(None)
    frame = seeds[i % len(seeds)]
    feed(frame[:14] + mutate(frame[14:], edits, cut))


@FUZZ
@given(data=st.binary(max_size=200))
def test_ipv4_reassembly_accounting(data: bytes) -> None:
    fuzz_targets.reassembly(data)


def test_the_coverage_guided_fuzzer_runs_a_few_seconds_clean(tmp_path: object) -> None:
    """The bounded run of tests/fuzz/fuzz.py (atheris when installed): no crash."""
    script = os.path.join(os.path.dirname(__file__), "fuzz.py")
    out = subprocess.run([sys.executable, script, "--seconds", "4", "--runs", "0"],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "executed_units" in text or "inputs, 0 crashes" in text, text[-2000:]

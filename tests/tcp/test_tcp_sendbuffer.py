"""The TCP send queue against a plain bytearray model: appends of every size and type,
acknowledgements, views across chunk boundaries, clears."""

from __future__ import annotations

import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from layers_tcp.buffers import SendBuffer

_SIZES = st.sampled_from([0, 1, 7, 100, 1448, 16383, 16384, 20000, 65535, 65536, 70000])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _SIZES, st.sampled_from(["bytes", "bytearray", "mv"])),
        st.tuples(st.just("consume"), st.integers(0, 80000), st.just("")),
        st.tuples(st.just("view"), st.integers(0, 200000), st.integers(0, 70000)),
        st.tuples(st.just("clear"), st.just(0), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_OPS, st.integers(0, 255))
def test_sendbuffer_matches_a_bytearray(ops: list[tuple[str, int, Any]], seed: int) -> None:
    buf = SendBuffer()
    model = bytearray()
    counter = seed
    for op, a, b in ops:
        if op == "append":
            data = bytes((counter + i) & 0xFF for i in range(a))
            counter += 7
            given_data: bytes | bytearray | memoryview = (
                data if b == "bytes" else bytearray(data) if b == "bytearray" else
                memoryview(bytearray(data))
            )
            buf.append(given_data)
            if isinstance(given_data, (bytearray, memoryview)):
                # the caller may reuse its buffer: what was queued must not change
                given_data[:] = bytes(len(given_data))
            model += data
        elif op == "consume":
            n = min(a, len(model))
            buf.consume(n)
            del model[:n]
        elif op == "view":
            if not model:
                continue
            off = a % len(model)
            n = min(b, len(model) - off)
            assert bytes(buf.view(off, n)) == bytes(model[off : off + n])
        else:
            buf.clear()
            model.clear()
        assert len(buf) == len(model)
        assert bool(buf) == bool(model)
    if model:
        assert bytes(buf.view(0, len(model))) == bytes(model)


def test_large_bytes_writes_are_queued_by_reference() -> None:
    buf = SendBuffer()
    big = bytes(range(256)) * 1024
    buf.append(big)
    view = buf.view(0, len(big))
    assert view is big
    part = buf.view(1000, 1448)
    assert isinstance(part, memoryview) and part.obj is big
    buf.consume(len(big) - 10)
    assert bytes(buf.view(0, 10)) == big[-10:]


def test_pieces_across_chunks_are_views_without_a_copy() -> None:
    buf = SendBuffer()
    first, second = b"a" * 20000, b"b" * 30000
    buf.append(first)
    buf.append(second)
    got = buf.pieces(19000, 2000)
    assert isinstance(got, tuple) and len(got) == 2
    assert all(isinstance(p, memoryview) for p in got)
    assert got[0].obj is first and got[1].obj is second  # type: ignore[union-attr]
    assert b"".join(got) == bytes(buf.view(19000, 2000)) == b"a" * 1000 + b"b" * 1000
    assert isinstance(buf.pieces(0, 1448), memoryview)  # within one chunk: one view


def test_the_view_kept_for_the_next_segment_lets_an_acknowledged_chunk_go() -> None:
    """Consecutive ranges of one chunk come from one kept view of it (no view of the whole
    chunk per segment); once the chunk is acknowledged the buffer holds no reference to it."""
    buf = SendBuffer()
    first, second = bytes(range(256)) * 100, b"b" * 30000
    buf.append(first)
    buf.append(second)
    held = sys.getrefcount(first)
    a, b = buf.pieces(0, 1448), buf.pieces(1448, 1448)
    assert isinstance(a, memoryview) and isinstance(b, memoryview)
    assert bytes(a) + bytes(b) == first[:2896]
    del a, b
    assert sys.getrefcount(first) == held + 1  # the kept view
    buf.consume(len(first) - 1)
    assert bytes(buf.view(0, 1)) == first[-1:]  # still in use: still held
    buf.consume(1)
    assert sys.getrefcount(first) == held - 1  # neither the chunk nor a view of it is left
    assert bytes(buf.view(0, 100)) == b"b" * 100

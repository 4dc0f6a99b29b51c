"""layers.wire.tcp gives one answer: two timestamp options, and a parsed header re-encoded."""

from __future__ import annotations

import attrs
import pytest

from layers.wire.tcp import TCPHeader, TCPOptions, parse_options, parse_timestamps

TS1 = b"\x01\x01\x08\x0a" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
TS2 = b"\x01\x01\x08\x0a" + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")


@pytest.mark.parametrize("block", [TS1 + TS2, TS1 + b"\x01\x01\x04\x02" + TS2,
                                   b"\x01\x01\x04\x02" + TS1 + TS2])
def test_two_timestamp_options_give_the_last_one_everywhere(block: bytes) -> None:
    assert parse_options(block).timestamp == (3, 4)
    assert parse_timestamps(block) == (3, 4)


def test_the_fast_path_agrees_on_a_lone_timestamp() -> None:
    assert parse_timestamps(TS1) == parse_options(TS1).timestamp == (1, 2)


def test_a_parsed_header_keeps_its_length_when_re_encoded() -> None:
    # a header with 12 bytes of options of which the stack only understands MSS
    opts = b"\x02\x04\x05\xb4" + b"\x01" * 8
    wire = TCPHeader(1, 2, 3, 4, 0x02, 100, options=TCPOptions(), data_offset=8).to_bytes(
        src=1, dst=2)
    wire = wire[:20] + opts
    parsed = TCPHeader.from_bytes(wire)
    assert parsed.data_offset == 8 and parsed.options.mss == 1460
    again = parsed.to_bytes(b"data")
    assert len(again) == parsed.header_length + 4 == 36
    assert (again[12] >> 4) == 8
    assert TCPHeader.from_bytes(again).options == parsed.options
    assert again[32:] == b"data"
    # sized from its own options once the parsed offset is let go
    shorter = attrs.evolve(parsed, data_offset=None)
    assert len(shorter.to_bytes()) == shorter.header_length == 24


def test_an_offset_too_small_for_the_options_is_refused() -> None:
    h = TCPHeader(1, 2, options=TCPOptions(mss=1460, timestamp=(1, 2)), data_offset=5)
    with pytest.raises(ValueError, match="data_offset=None"):
        h.to_bytes(src=1, dst=2)

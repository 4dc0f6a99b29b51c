"""layers.streams.write_buffer_limits: the defaults and checks every transport of ours shares
(TCP's stream transport, the datagram transport), as asyncio's own transports apply them."""

from __future__ import annotations

import pytest

from layers.streams import write_buffer_limits


def test_defaults_follow_asyncio() -> None:
    assert write_buffer_limits() == (65536, 16384)
    assert write_buffer_limits(high=1000) == (1000, 250)
    assert write_buffer_limits(low=100) == (400, 100)
    assert write_buffer_limits(high=10, low=10) == (10, 10)
    assert write_buffer_limits(high=0, low=0) == (0, 0)


@pytest.mark.parametrize(("high", "low"), [(10, 20), (-4, None), (10, -1)])
def test_inconsistent_limits_are_refused(high: int, low: int | None) -> None:
    with pytest.raises(ValueError, match="must be >="):
        write_buffer_limits(high, low)

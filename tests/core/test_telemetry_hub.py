"""The stack's telemetry subscriber list: subscribe, per-flow intervals, unsubscribe."""

from __future__ import annotations

import pytest

from layers.stack import Stack
from layers.telemetry import SAMPLE_FIELDS, ConnectionSample


def _sample(t: float, flow: str = "a") -> ConnectionSample:
    return ConnectionSample(
        time=t, flow=flow, state="ESTABLISHED", cc="newreno", cwnd=14600, ssthresh=1 << 30,
        in_flight=0, srtt=0.01, rttvar=0.005, min_rtt=0.01, rtt=0.01, rto=0.2, delivered=0,
        delivery_rate=0.0, pacing_rate=None, retransmits=0, lost=0, send_q=0, snd_wnd=65535,
        mss=1460, cc_state={"w_max": 3.0},
    )


def test_subscribe_interval_and_close() -> None:
    stack = Stack([])
    hub = stack.telemetry
    assert not hub.active
    every: list[float] = []
    sparse: list[tuple[str, float]] = []
    a = hub.subscribe(lambda s: every.append(s.time))
    b = hub.subscribe(lambda s: sparse.append((s.flow, s.time)), interval=0.1)
    assert hub.active
    for i in range(10):
        hub.emit(_sample(i * 0.03, "a"))
        hub.emit(_sample(i * 0.03, "b"))
    assert len(every) == 20
    # at most one sample per 0.1 s per flow
    assert [t for f, t in sparse if f == "a"] == pytest.approx([0.0, 0.12, 0.24])
    assert [t for f, t in sparse if f == "b"] == pytest.approx([0.0, 0.12, 0.24])
    a.close()
    with b:
        pass
    assert not hub.active
    hub.emit(_sample(5.0))
    assert len(every) == 20


def test_sample_as_dict_flattens_the_algorithm_state() -> None:
    d = _sample(1.0).as_dict()
    assert list(d)[: len(SAMPLE_FIELDS)] == list(SAMPLE_FIELDS)
    assert d["cc.w_max"] == 3.0


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Stack([]).telemetry.subscribe(print, interval=-1)

"""Hand-made connection samples for the telemetry consumers' tests."""

from __future__ import annotations

from typing import Any

from layers.telemetry import ConnectionSample

FLOW = "10.0.0.1:40000->10.0.0.2:5001"


def sample(**fields: Any) -> ConnectionSample:
    """A plausible ESTABLISHED sample; any field can be overridden."""
    values: dict[str, Any] = dict(
        time=0.0, flow=FLOW, state="ESTABLISHED", cc="cubic", cwnd=14480, ssthresh=1 << 31,
        in_flight=7240, srtt=0.021, rttvar=0.004, min_rtt=0.02, rtt=0.0205, rto=0.2,
        delivered=0, delivery_rate=0.0, pacing_rate=None, retransmits=0, lost=0, send_q=65536,
        snd_wnd=65535, mss=1448, cc_state={},
    )
    values.update(fields)
    return ConnectionSample(**values)

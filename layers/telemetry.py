"""Per-connection telemetry: what a transport reports about each connection over time.

A transport (the ``tcp`` plugin) keeps a list of observers per connection and one per stack;
when both are empty the cost is one truth test per ACK. When someone listens, the engine
builds a :class:`ConnectionSample` at every ACK that changes its state (or every
``interval`` seconds, as the subscriber chose) and calls each observer with it.

Subscribing::

    sub = stack.telemetry.subscribe(callback)              # every connection of the stack
    sub = stack.telemetry.subscribe(callback, interval=0.01)
    sub.close()

Writers (JSON lines, CSV), ``layers ss`` and ``layers plot`` live outside the transport and
only see these samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["SAMPLE_FIELDS", "ConnectionSample", "Observer"]


@attrs.define(slots=True)
class ConnectionSample:
    """One connection at one instant. Sizes in bytes, times in seconds, rates in bytes/s."""

    #: the stack's clock
    time: float
    #: "10.0.0.1:40000->10.0.0.2:80"; stable for the connection's life
    flow: str
    #: the connection's state name ("ESTABLISHED", ...)
    state: str
    #: the congestion control's name
    cc: str
    cwnd: int
    ssthresh: int
    #: bytes sent and not yet acknowledged or SACKed/lost (the engine's pipe)
    in_flight: int
    srtt: float | None
    rttvar: float | None
    min_rtt: float | None
    #: the last RTT sample
    rtt: float | None
    rto: float
    #: cumulative bytes delivered to the peer (acknowledged or SACKed)
    delivered: int
    #: the latest delivery-rate sample (0.0 before the first)
    delivery_rate: float
    pacing_rate: float | None
    #: cumulative retransmitted segments and segments marked lost
    retransmits: int
    lost: int
    #: bytes the application has written and the peer not yet acknowledged
    send_q: int
    #: the peer's advertised window
    snd_wnd: int
    mss: int
    #: the algorithm's own fields (CongestionControl.state())
    cc_state: Mapping[str, Any] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A flat dict; the algorithm's fields are prefixed ``cc.`` (for JSON and CSV)."""
        d = {f: getattr(self, f) for f in SAMPLE_FIELDS}
        for k, v in self.cc_state.items():
            d[f"cc.{k}"] = v
        return d


#: the fixed fields of a sample, in column order
SAMPLE_FIELDS: tuple[str, ...] = tuple(
    a.name for a in attrs.fields(ConnectionSample) if a.name != "cc_state"
)

Observer = Callable[[ConnectionSample], None]

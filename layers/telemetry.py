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

__all__ = ["SAMPLE_FIELDS", "ConnectionSample", "Observer", "Subscription", "Telemetry"]


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
    #: ECN (RFC 3168), cumulative: congestion responses to the peer's echoes (on_ecn calls),
    #: and data segments that arrived marked CE; 0 on connections without ECN
    ecn_reductions: int = 0
    ecn_ce_received: int = 0

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


class Subscription:
    """One observer's registration; :meth:`close` ends it."""

    __slots__ = ("_hub", "callback", "interval", "last")

    def __init__(self, hub: Telemetry, callback: Observer, interval: float) -> None:
        self._hub = hub
        self.callback = callback
        #: seconds between samples of one connection (0: every ACK that changes state)
        self.interval = interval
        #: flow -> time of the last sample delivered to this subscriber
        self.last: dict[str, float] = {}

    def deliver(self, sample: ConnectionSample) -> None:
        """Call the observer unless its interval has not yet passed for this flow."""
        if self.interval > 0.0:
            prev = self.last.get(sample.flow)
            if prev is not None and sample.time - prev < self.interval:
                return
            self.last[sample.flow] = sample.time
        self.callback(sample)

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Telemetry:
    """The stack's subscriber list (``stack.telemetry``). Transports test
    :attr:`active` (a plain bool) before building a sample, then call :meth:`emit`."""

    __slots__ = ("active", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        #: True while anyone listens; the one test a transport makes per ACK
        self.active = False

    def subscribe(self, callback: Observer, *, interval: float = 0.0) -> Subscription:
        """Call ``callback(sample)`` for every connection of the stack, at every ACK that
        changes the connection's state, or at most once per ``interval`` seconds per flow."""
        if interval < 0:
            raise ValueError(f"interval {interval!r} is negative; give seconds >= 0")
        sub = Subscription(self, callback, float(interval))
        self.subscriptions.append(sub)
        self.active = True
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        self.active = bool(self.subscriptions)

    def emit(self, sample: ConnectionSample) -> None:
        for sub in self.subscriptions:
            sub.deliver(sample)

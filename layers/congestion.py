"""The congestion-control contract: what a TCP congestion-control plugin implements.

Modelled on Linux's ``tcp_congestion_ops`` (``cong_control`` with a ``rate_sample``,
``cwnd_event``, ``set_state``, ``undo_cwnd``) and quiche's ``on_packet_sent`` /
``on_packets_acked`` / ``congestion_event``. The transport engine (the ``tcp`` plugin, or any
other) owns sequence numbers, loss detection, retransmission and the send loop; the algorithm
owns three numbers the engine reads before every transmission:

* ``cwnd``: bytes the engine may have in flight;
* ``ssthresh``: the slow-start threshold, reported in telemetry (Reno-style algorithms use it);
* ``pacing_rate``: bytes per second at which segments leave, or ``None`` for no pacing.

The engine calls, each event distinct, always with the engine's ``now`` (seconds on the
stack's clock, virtual or real; algorithms never read a clock themselves):

=============================  ===========================================================
``on_start(mss, now)``         the connection is established and its MSS known: set the
                               initial window (``ctx.initial_cwnd`` segments, RFC 6928)
``on_packet_sent(...)``        a data segment left (``in_flight`` after it, app-limited flag)
``on_ack(rs)``                 an ACK delivered data (cumulatively or by SACK); ``rs`` is a
                               :class:`RateSample` (draft-cheng-iccrg-delivery-rate-estimation);
                               also called during recovery with ``rs.in_recovery`` set
``on_enter_recovery(...)``     loss detected (duplicate ACKs, SACK, RACK): reduce the window
``on_exit_recovery(...)``      recovery ended (everything outstanding at its start is acked)
``on_timeout(...)``            the retransmission timer expired
``on_undo(now)``               the engine found its last congestion response spurious (F-RTO,
                               Eifel, D-SACK): restore what ``on_enter_recovery`` /
                               ``on_timeout`` changed
``on_ecn(...)``                the peer echoed a CE mark (ECE, RFC 3168), at most once a RTT
=============================  ===========================================================

A plugin registers algorithms through the ``layers_congestion_controls`` hook, returning
:class:`CongestionControlInfo` records (or, for brevity, a ``{name: factory}`` mapping). The
engine calls ``factory(ctx)`` once per connection with a :class:`CongestionContext`.
:class:`CongestionControlBase` gives every method a do-nothing default and implements undo by
saving ``cwnd``/``ssthresh`` before each reduction; subclass it and override what you need.

This module imports nothing from any plugin, so algorithms never import the TCP plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from layers.errors import CompositionError

__all__ = [
    "CongestionContext",
    "CongestionControl",
    "CongestionControlBase",
    "CongestionControlInfo",
    "CongestionFactory",
    "RateSample",
    "collect_congestion_controls",
]


@attrs.define(slots=True)
class RateSample:
    """What one ACK tells the algorithm (draft-cheng-iccrg-delivery-rate-estimation, with the
    extra fields Linux's ``struct rate_sample`` carries). Sizes in bytes, times in seconds.

    The engine builds one per ACK that delivers data and hands the same object to every
    algorithm call of that ACK; algorithms must not keep it past the call."""

    #: the engine's clock at this ACK
    now: float
    #: bytes newly delivered by this ACK: cumulatively acknowledged plus newly SACKed
    delivered: int
    #: bytes newly cumulatively acknowledged (SND.UNA advance)
    newly_acked: int
    #: bytes this ACK newly marked lost
    newly_lost: int
    #: the connection's delivered count when the most recently delivered segment was sent
    prior_delivered: int
    #: the connection's delivered count after this ACK (C.delivered)
    delivered_total: int
    #: the interval over which ``delivery_rate`` was measured (max of send and ACK elapsed);
    #: ``0.0`` when this ACK gives no valid rate sample
    interval: float
    #: ``(delivered_total - prior_delivered) / interval`` in bytes per second, ``0.0`` without a
    #: valid sample
    delivery_rate: float
    #: the sample was taken while the sender was application-limited (its rate is a lower
    #: bound, not the path's capacity)
    is_app_limited: bool
    #: this ACK's RTT sample, if it gave one (Karn's rule / timestamps)
    rtt: float | None
    #: the connection's minimum RTT so far
    min_rtt: float | None
    #: the smoothed RTT (RFC 6298)
    srtt: float | None
    #: bytes in flight before and after this ACK
    prior_in_flight: int
    in_flight: int
    #: the ACK carried ECE (the engine also calls :meth:`CongestionControl.on_ecn`)
    ece: bool
    #: the engine is in loss recovery
    in_recovery: bool
    #: the connection's current sender MSS
    mss: int


@attrs.frozen
class CongestionContext:
    """What a factory gets to make one connection's algorithm."""

    #: the sender MSS when the algorithm is made (the peer's MSS may lower it; the final
    #: value arrives with :meth:`CongestionControl.on_start`)
    mss: int
    #: the initial window in segments (the engine's setting, RFC 6928's 10 by default)
    initial_cwnd: int = 10
    #: this algorithm's own settings: its declared defaults overridden by ``--set NAME.KEY=V``
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: a seed for any randomness the algorithm needs (derived from the stack's seed and the
    #: connection), so virtual-clock runs are reproducible
    seed: int = 0


@runtime_checkable
class CongestionControl(Protocol):
    """One connection's congestion-control algorithm. See the module docstring."""

    name: str
    #: the congestion window in bytes, read before every transmission
    cwnd: int
    #: the slow-start threshold in bytes
    ssthresh: int
    #: the pacing rate in bytes per second, or None when segments are not paced
    pacing_rate: float | None

    def on_start(self, mss: int, now: float) -> None:
        """The connection is established and ``mss`` is final: set the initial window."""

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        """A data segment of ``size`` bytes left; ``in_flight`` includes it."""

    def on_ack(self, rs: RateSample) -> None:
        """An ACK delivered data; grow (or, for model-based algorithms, set) ``cwnd``."""

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        """Loss was detected: set ``ssthresh`` and the window for recovery."""

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        """Loss recovery ended: set ``cwnd`` for what follows."""

    def on_timeout(self, in_flight: int, now: float) -> None:
        """The retransmission timer expired."""

    def on_undo(self, now: float) -> None:
        """The last reduction was spurious: restore the state from before it."""

    def on_ecn(self, in_flight: int, now: float) -> None:
        """The peer echoed congestion experienced (ECE)."""

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        """The algorithm's own fields for telemetry and ``layers ss -i`` (e.g. CUBIC's
        ``w_max``, BBR's ``mode`` and ``btl_bw``)."""


CongestionFactory = Callable[[CongestionContext], CongestionControl]


class CongestionControlBase:
    """A convenient base: every event does nothing, undo restores the window saved by
    :meth:`save_for_undo` (called by the default ``on_enter_recovery``/``on_timeout`` and by
    subclasses before they reduce), ``state()`` is empty. Windows in bytes."""

    name = "base"

    def __init__(self, ctx: CongestionContext) -> None:
        self.ctx = ctx
        self.mss = ctx.mss
        self.cwnd = ctx.initial_cwnd * ctx.mss
        self.ssthresh = 1 << 30
        self.pacing_rate: float | None = None
        self._undo: tuple[int, int] | None = None

    def on_start(self, mss: int, now: float) -> None:
        self.mss = mss
        self.cwnd = self.ctx.initial_cwnd * mss

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        pass

    def on_ack(self, rs: RateSample) -> None:
        pass

    def save_for_undo(self) -> None:
        self._undo = (self.cwnd, self.ssthresh)

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        self.save_for_undo()

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        pass

    def on_timeout(self, in_flight: int, now: float) -> None:
        self.save_for_undo()

    def on_undo(self, now: float) -> None:
        if self._undo is not None:
            cwnd, ssthresh = self._undo
            self.cwnd = max(self.cwnd, cwnd)
            self.ssthresh = max(self.ssthresh, ssthresh)
            self._undo = None

    def on_ecn(self, in_flight: int, now: float) -> None:
        pass

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        return {}


@attrs.frozen
class CongestionControlInfo:
    """One algorithm a plugin offers through ``layers_congestion_controls``."""

    #: the name users select (``--set tcp.congestion_control=NAME``, ``congestion_control=``)
    name: str
    #: ``factory(ctx) -> CongestionControl``, called once per connection
    factory: CongestionFactory
    #: the algorithm's settings and their defaults; ``--set NAME.KEY=VALUE`` overrides one,
    #: converted to the default's type; an unknown key is a configuration error
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: one line for ``layers plugins``
    description: str = ""
    #: the distribution that provides it, for error messages (filled in by the loader)
    plugin: str = ""
    #: ``check(given)`` validates the ``--set NAME.KEY`` values given (already converted to
    #: their defaults' types) when the stack is composed, raising ConfigurationError that names
    #: the fix (ranges, combinations); None when the types are all there is to check
    check: Callable[[Mapping[str, Any]], object] | None = None


def collect_congestion_controls(
    answers: Iterable[Any], plugins: Iterable[str] | None = None
) -> dict[str, CongestionControlInfo]:
    """Merge the ``layers_congestion_controls`` answers (records or ``{name: factory}``
    mappings) into ``{name: info}``; a name given twice is a :class:`CompositionError`."""
    found: dict[str, CongestionControlInfo] = {}
    for answer in answers:
        if not answer:
            continue
        items: Iterable[CongestionControlInfo]
        if isinstance(answer, Mapping):
            items = [
                v if isinstance(v, CongestionControlInfo)
                else CongestionControlInfo(name=k, factory=v)
                for k, v in answer.items()
            ]
        else:
            items = list(answer)
        for info in items:
            if not isinstance(info, CongestionControlInfo):
                raise CompositionError(
                    f"layers_congestion_controls returned {info!r}; return "
                    f"CongestionControlInfo records or a {{name: factory}} mapping"
                )
            old = found.get(info.name)
            if old is not None and old.factory is not info.factory:
                raise CompositionError(
                    f"two plugins provide the congestion control {info.name!r}; block one "
                    f"of them with LAYERS_DISABLE_PLUGINS"
                )
            found[info.name] = info
    return found

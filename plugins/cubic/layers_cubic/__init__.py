"""The cubic plugin for layers: CUBIC congestion control (RFC 9438) with HyStart++ (RFC 9406).

Registered through the ``layers_congestion_controls`` hook as ``cubic``; select it for a stack
with ``--set tcp.congestion_control=cubic`` or for one connection with
``congestion_control="cubic"`` (``stack.open_connection(..., congestion_control="cubic")``).

Settings (``--set cubic.KEY=VALUE``), see :mod:`layers_cubic.cubic`: ``beta`` (0.7), ``c``
(0.4), ``fast_convergence`` (true), ``reno_friendly`` (true), ``hystart`` (true: HyStart++ in
the initial slow start), ``pacing`` (false).

``state()`` (telemetry, ``layers ss -i``): ``region`` (slow_start, css, reno, concave, convex,
recovery), ``w_max``, ``cwnd_epoch``, ``w_est``, ``cwnd_prior`` (bytes), ``k`` (seconds),
``epoch_start`` (the stack's clock), ``hystart`` (ss, css, done, off) and event counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from layers.congestion import CongestionControlInfo
from layers.hookspecs import hookimpl
from layers_cubic.cubic import DEFAULTS, Cubic, HyStartPP, cubic_settings

__all__ = ["DEFAULTS", "INFO", "Cubic", "HyStartPP", "cubic_settings"]



#: what this plugin offers through ``layers_congestion_controls``
INFO = CongestionControlInfo(
    name="cubic",
    factory=Cubic,
    settings=dict(DEFAULTS),
    check=cubic_settings,
    description="CUBIC (RFC 9438), Reno-friendly region, fast convergence, HyStart++",
)


@hookimpl
def layers_congestion_controls() -> Iterable[CongestionControlInfo]:
    return [INFO]

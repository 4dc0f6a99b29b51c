"""The bbr plugin for layers: BBR v1 congestion control (draft-cardwell-iccrg-bbr-congestion-
control-00, as Linux's tcp_bbr.c runs it).

Registered through the ``layers_congestion_controls`` hook as ``bbr``; select it for a stack
with ``--set tcp.congestion_control=bbr`` or for one connection with
``congestion_control="bbr"``. BBR sets ``pacing_rate``: the engine paces its segments.

Settings (``--set bbr.KEY=VALUE``), see :mod:`layers_bbr.bbr`: ``high_gain`` (2/ln 2),
``cwnd_gain`` (2), ``bw_window_rounds`` (10), ``min_rtt_window`` (10 s),
``probe_rtt_duration`` (0.2 s), ``min_cwnd_segments`` (4), ``pacing_margin`` (0.01),
``full_bw_growth`` (0.25), ``full_bw_rounds`` (3).

``state()`` (telemetry, ``layers ss -i``): ``mode``, ``btl_bw`` (bytes/s), ``min_rtt`` (s),
``pacing_gain``, ``cwnd_gain``, ``round_count``, ``full_bw``, ``full_bw_reached``,
``cycle_index``, ``bdp`` (bytes), ``prior_cwnd``, ``packet_conservation``,
``probe_rtt_count``, ``ecn_echoes``, ``bogus_samples`` (ACKs claiming more delivered than
was in flight; the rate samples spanning them are ignored).
"""

from __future__ import annotations

from collections.abc import Iterable

from layers.congestion import CongestionControlInfo
from layers.hookspecs import hookimpl
from layers_bbr.bbr import BBR, DEFAULTS, bbr_settings

__all__ = ["BBR", "DEFAULTS", "INFO", "bbr_settings"]



#: what this plugin offers through ``layers_congestion_controls``
INFO = CongestionControlInfo(
    name="bbr",
    factory=BBR,
    settings=dict(DEFAULTS),
    check=bbr_settings,
    description="BBR v1: bottleneck bandwidth and min RTT model, pacing, probe-bw/probe-rtt",
)


@hookimpl
def layers_congestion_controls() -> Iterable[CongestionControlInfo]:
    return [INFO]

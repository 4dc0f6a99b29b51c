"""Congestion control: NewReno (RFC 5681 window growth, RFC 6582 recovery) and the registry.

Algorithms implement :class:`layers.streams.CongestionControl` and are offered through the
``layers_congestion_controls`` hook, this plugin's own NewReno included; the TCP engine keeps
the loss detection and the recovery bookkeeping, the algorithm owns ``cwnd`` growth and cuts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from layers.errors import CompositionError, ConfigurationError
from layers.streams import CongestionControl

Factory = Callable[[int], CongestionControl]


class NewReno:
    """Slow start and congestion avoidance by byte counting (RFC 5681, RFC 3465 with L=2).

    ``cwnd`` starts at ``initial_cwnd`` segments (RFC 6928's ten, like Linux)."""

    name = "newreno"

    def __init__(self, mss: int, initial_cwnd: int = 10) -> None:
        self.cwnd = initial_cwnd * mss
        self.ssthresh = 1 << 30
        self._acked = 0
        self._mss = mss

    def on_ack(self, acked: int, mss: int, now: float, rtt: float | None) -> None:
        self._mss = mss
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, 2 * mss)
        else:
            self._acked += acked
            if self._acked >= self.cwnd:
                self._acked -= self.cwnd
                self.cwnd += mss

    def on_congestion(self, flight: int, mss: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * mss)
        self._acked = 0

    def on_recovery_exit(self, flight: int, mss: int) -> None:
        # RFC 6582 3.2 step 3, option 1: min(ssthresh, FlightSize + SMSS)
        self.cwnd = min(self.ssthresh, max(flight, 0) + mss)

    def on_ecn(self, in_flight: int, now: float) -> None:
        """ECE (RFC 3168 6.1.2): halve as for a loss (RFC 5681 (4)); nothing is resent,
        so there is no recovery inflation: the window drops straight to ssthresh."""
        self.ssthresh = max(in_flight // 2, 2 * self._mss)
        self.cwnd = self.ssthresh
        self._acked = 0

    def on_timeout(self, flight: int, mss: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * mss)
        self.cwnd = mss
        self._acked = 0


def collect(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the hook's answers; a name given twice is a composition error."""
    found: dict[str, Any] = {}
    for mapping in results:
        for name, factory in (mapping or {}).items():
            if name in found and found[name] is not factory:
                raise CompositionError(
                    f"two plugins provide the congestion control {name!r}; block one of them"
                )
            found[name] = factory
    return found


def make(registry: Mapping[str, Any], name: str, mss: int, initial_cwnd: int) -> CongestionControl:
    """One connection's algorithm ``name``, or ConfigurationError listing the known ones."""
    factory = registry.get(name)
    if factory is None:
        known = ", ".join(sorted(registry)) or "none"
        raise ConfigurationError(
            f"unknown congestion control {name!r}; available: {known} (more come from plugins "
            f"implementing layers_congestion_controls)"
        )
    cc = factory(mss)
    if isinstance(cc, NewReno):
        cc.cwnd = initial_cwnd * mss
    return cc

"""CUBIC (RFC 9438) with HyStart++ (RFC 9406) slow start, on the ``layers.congestion`` contract.

The contract's windows are bytes; the RFC's arithmetic is in segments, so the algorithm keeps
its window as a float number of segments (``_w``) and publishes ``cwnd = int(_w * mss)`` after
every change. Times are the engine's ``now`` (seconds); nothing here reads a clock.

Congestion avoidance (RFC 9438 4.2-4.5)::

    W_cubic(t) = C * (t - K)**3 + W_max            K = cbrt((W_max - cwnd_epoch) / C)
    target     = clamp(W_cubic(t + RTT), cwnd, 1.5 * cwnd)
    cwnd      += (target - cwnd) / cwnd            per segment acknowledged

``t`` runs from the first ACK of the congestion-avoidance stage (``epoch_start``), ``RTT`` is
the smoothed RTT. In parallel the Reno estimate grows by ``alpha_cubic * acked / cwnd`` with
``alpha_cubic = 3 (1 - beta) / (1 + beta)`` (1 once it passed ``cwnd_prior``); whenever
``W_cubic(t) < W_est`` the window is ``W_est`` (the Reno-friendly region, 4.3).

Congestion events (4.6, 4.7, 4.8): ``W_max`` becomes the window before the cut, or, with fast
convergence and a window already below the previous ``W_max``, ``cwnd * (1 + beta) / 2``;
``ssthresh = beta * cwnd`` (this implementation uses ``cwnd`` rather than the flight size, as
Linux does, and therefore does not grow the window while the sender is not cwnd-limited, see
below); ``cwnd = max(ssthresh, 2)`` after loss, ``max(ssthresh, 1)`` after an ECN echo,
1 segment after a retransmission timeout, and the first congestion-avoidance stage after a
timeout starts with ``K = 0`` and ``W_max = cwnd_epoch``. A timeout during a recovery that
already cut the window, or one repeating before anything was delivered, keeps ``ssthresh`` and
``W_max`` (RFC 5681 3.1: held constant for a segment already retransmitted; Linux likewise).
Every event saves what it changes and :meth:`Cubic.on_undo` restores it (4.9).

Choices, each a setting (``--set cubic.KEY=VALUE``):

* ``beta`` (0.7) and ``c`` (0.4): RFC 9438's constants.
* ``fast_convergence`` (true), ``reno_friendly`` (true): sections 4.7 and 4.3.
* ``hystart`` (true): HyStart++ in the *initial* slow start, as RFC 9406 4.3 recommends. On by
  default, like Linux's CUBIC (which runs the older HyStart); the delay-based exit avoids the
  large overshoot and burst of losses a bulk flow otherwise causes at a deep bottleneck queue.
* ``pacing`` (false): off, CUBIC is window-driven. When on, the pacing rate is Linux's
  ``2 * cwnd / srtt`` in slow start and ``1.2 * cwnd / srtt`` afterwards, and HyStart++ caps
  the slow-start increase per ACK at ``L = 8`` segments (RFC 9406 4.2).

Not cwnd-limited (RFC 9438 4.2 and RFC 7661): when the data in flight before an ACK is below
half the window the sender is limited by the application, and the window does not grow (the
rule Linux applies in slow start). After an idle period (a send with nothing in flight) the
epoch start moves forward by the idle time, so the cubic curve does not leap ahead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from layers.congestion import CongestionContext, CongestionControlBase, RateSample
from layers.errors import ConfigurationError

__all__ = ["DEFAULTS", "Cubic", "HyStartPP", "cubic_settings"]

#: the settings ``--set cubic.KEY=VALUE`` may change, with their defaults
DEFAULTS: Mapping[str, Any] = {
    "beta": 0.7,
    "c": 0.4,
    "fast_convergence": True,
    "reno_friendly": True,
    "hystart": True,
    "pacing": False,
}

#: "infinite" ssthresh in bytes, as the contract's base class uses
_NO_SSTHRESH = 1 << 30


def cubic_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over :data:`DEFAULTS`, checked; :class:`ConfigurationError` names the fix."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"unknown cubic setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}"
        )
    s = {**DEFAULTS, **given}
    for key in ("beta", "c"):
        if isinstance(s[key], bool) or not isinstance(s[key], (int, float)):
            raise ConfigurationError(f"cubic.{key} must be a number, not {s[key]!r}")
        s[key] = float(s[key])
    if not 0.0 < s["beta"] < 1.0:
        raise ConfigurationError(
            f"cubic.beta={s['beta']} is out of range; use 0 < beta < 1 (RFC 9438: 0.7)"
        )
    if not s["c"] > 0.0:
        raise ConfigurationError(f"cubic.c={s['c']} must be positive (RFC 9438: 0.4)")
    for key in ("fast_convergence", "reno_friendly", "hystart", "pacing"):
        if not isinstance(s[key], bool):
            raise ConfigurationError(f"cubic.{key} must be true or false, not {s[key]!r}")
    return s


class HyStartPP:
    """HyStart++ (RFC 9406): leave slow start on a rise in the per-round minimum RTT, grow at a
    quarter of the rate for ``CSS_ROUNDS`` rounds (Conservative Slow Start), then hand over to
    congestion avoidance; go back to slow start if the RTT rise proves spurious.

    Rounds are counted with the rate sample's delivered counts: a round ends when an ACK
    delivers data sent after the round began (``rs.prior_delivered`` reached the delivered
    count at the round's start), which is RFC 9406's ``windowEnd`` without sequence numbers.
    """

    MIN_RTT_THRESH = 0.004
    MAX_RTT_THRESH = 0.016
    MIN_RTT_DIVISOR = 8
    N_RTT_SAMPLE = 8
    CSS_GROWTH_DIVISOR = 4
    CSS_ROUNDS = 5

    def __init__(self, paced: bool) -> None:
        #: "ss", "css" or "done" (congestion avoidance reached or a congestion event)
        self.phase = "ss"
        #: segments one ACK may add at most (RFC 9406's L)
        self.limit = 8.0 if paced else math.inf
        self.round_end = 0
        self.last_round_min_rtt = math.inf
        self.current_round_min_rtt = math.inf
        self.rtt_samples = 0
        self.css_baseline_min_rtt = math.inf
        self.css_rounds = 0
        #: how many times CSS was entered and how many of those were found spurious
        self.css_entries = 0
        self.css_spurious = 0

    def on_ack(self, rs: RateSample, acked_segments: float) -> float:
        """Account one ACK in slow start; the segments the window may grow by. After it,
        ``phase == "done"`` means: set ssthresh to cwnd and enter congestion avoidance."""
        if rs.prior_delivered >= self.round_end:
            # a new round: RFC 9406 4.2, "at the start of each round"
            self.round_end = rs.delivered_total
            self.last_round_min_rtt = self.current_round_min_rtt
            self.current_round_min_rtt = math.inf
            self.rtt_samples = 0
            if self.phase == "css":
                self.css_rounds += 1
                if self.css_rounds >= self.CSS_ROUNDS:
                    self.phase = "done"
                    return 0.0
        if rs.rtt is not None:
            # whole microseconds, as kernels keep RTTs: float noise is no RTT change
            rtt = round(rs.rtt * 1e6) / 1e6
            self.current_round_min_rtt = min(self.current_round_min_rtt, rtt)
            self.rtt_samples += 1
        enough = (
            self.rtt_samples >= self.N_RTT_SAMPLE
            and self.current_round_min_rtt != math.inf
            and self.last_round_min_rtt != math.inf
        )
        if self.phase == "ss" and enough:
            thresh = max(
                self.MIN_RTT_THRESH,
                min(self.last_round_min_rtt / self.MIN_RTT_DIVISOR, self.MAX_RTT_THRESH),
            )
            if self.current_round_min_rtt >= self.last_round_min_rtt + thresh:
                self.css_baseline_min_rtt = self.current_round_min_rtt
                self.phase = "css"
                self.css_rounds = 0
                self.css_entries += 1
        elif (
            self.phase == "css"
            and self.rtt_samples >= self.N_RTT_SAMPLE
            and self.current_round_min_rtt < self.css_baseline_min_rtt
        ):
            # the RTT went back down: the exit was spurious, resume slow start
            self.css_baseline_min_rtt = math.inf
            self.phase = "ss"
            self.css_spurious += 1
        grow = min(acked_segments, self.limit)
        return grow / self.CSS_GROWTH_DIVISOR if self.phase == "css" else grow


class Cubic(CongestionControlBase):
    """One connection's CUBIC; see the module docstring. Windows in bytes on the contract,
    segments (floats) inside."""

    name = "cubic"

    def __init__(self, ctx: CongestionContext) -> None:
        super().__init__(ctx)
        s = cubic_settings(ctx.settings)
        self.beta: float = s["beta"]
        self.c: float = s["c"]
        self.fast_convergence: bool = s["fast_convergence"]
        self.reno_friendly: bool = s["reno_friendly"]
        self.paced: bool = s["pacing"]
        self.alpha = 3.0 * (1.0 - self.beta) / (1.0 + self.beta)
        self.hystart: HyStartPP | None = HyStartPP(self.paced) if s["hystart"] else None
        # the RFC's variables, in segments and seconds
        self._w = float(ctx.initial_cwnd)
        self._ssthresh = math.inf
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.cwnd_epoch = 0.0
        self.w_est = 0.0
        self.cwnd_prior = 0.0
        self._after_timeout = False
        #: a timeout with nothing delivered since
        self._timed_out = False
        self.srtt: float | None = None
        #: "slow_start", "css", "reno" (Reno-friendly), "concave", "convex", "recovery"
        self.region = "slow_start"
        self._in_recovery = False
        self._last_send: float | None = None
        self._saved: dict[str, Any] | None = None
        self.congestion_events = 0
        self.timeouts = 0
        self.ecn_events = 0
        self.undos = 0
        self._publish()

    # --- window bookkeeping -------------------------------------------------------------

    def _publish(self) -> None:
        self.cwnd = max(round(self._w * self.mss), self.mss)
        self.ssthresh = (
            _NO_SSTHRESH if self._ssthresh == math.inf else round(self._ssthresh * self.mss)
        )
        self._published = self.cwnd

    def _adopt_engine_window(self) -> None:
        # the engine may have set cwnd itself (proportional rate reduction in recovery)
        if self.cwnd != self._published:
            self._w = self.cwnd / self.mss

    def w_cubic(self, t: float) -> float:
        """RFC 9438 Figure 1, in segments, for the current epoch."""
        return self.c * (t - self.k) ** 3 + self.w_max

    # --- events -------------------------------------------------------------------------

    def on_start(self, mss: int, now: float) -> None:
        self.mss = mss
        self._w = float(self.ctx.initial_cwnd)
        self._publish()

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        if in_flight <= size and self._last_send is not None and self.epoch_start is not None:
            # restarting after idle: the cubic curve must not count the idle time
            idle = now - self._last_send
            if idle > 0:
                self.epoch_start = min(self.epoch_start + idle, now)
        self._last_send = now

    def on_ack(self, rs: RateSample) -> None:
        self._adopt_engine_window()
        if rs.mss != self.mss:
            self.mss = rs.mss
        if rs.srtt is not None:
            self.srtt = rs.srtt
        elif rs.rtt is not None and self.srtt is None:
            self.srtt = rs.rtt
        if rs.in_recovery:
            self.region = "recovery"
            return  # the engine paces the recovery; CUBIC grows again after it
        if self._in_recovery:
            # the engine left recovery without on_exit_recovery: settle as that would
            self._finish_recovery()
        if rs.delivered <= 0:
            return
        self._timed_out = False
        if 2 * rs.prior_in_flight < self.cwnd:
            self._set_pacing()
            return  # not cwnd-limited (RFC 7661): no growth
        acked = rs.delivered / self.mss
        if self._w < self._ssthresh:
            acked = self._slow_start(rs, acked)
            if acked <= 0.0:
                self._publish()
                self._set_pacing()
                return
        self._avoid_congestion(rs.now, acked)
        self._publish()
        self._set_pacing()

    def _slow_start(self, rs: RateSample, acked: float) -> float:
        """Grow in slow start; returns the acknowledged segments left for congestion
        avoidance (when ssthresh was crossed or HyStart++ finished)."""
        hs = self.hystart
        if hs is not None and hs.phase != "done":
            grow = hs.on_ack(rs, acked)
            if hs.phase == "done":
                # CSS_ROUNDS of conservative slow start: congestion avoidance from here
                self._ssthresh = self._w
                self.region = "concave"
                return 0.0
            self.region = "css" if hs.phase == "css" else "slow_start"
            self._w += grow
            return 0.0
        self.region = "slow_start"
        room = self._ssthresh - self._w
        if acked <= room:
            self._w += acked
            return 0.0
        self._w = self._ssthresh
        return acked - room

    def _avoid_congestion(self, now: float, acked: float) -> None:
        if self.epoch_start is None:
            self.epoch_start = now
            self.cwnd_epoch = self._w
            if self._after_timeout or self.w_max <= self._w:
                # first stage after a timeout (4.8), or above the last W_max (as when slow
                # start ended without a congestion event): the curve's plateau is here
                self.w_max = self._w
                self.k = 0.0
            else:
                self.k = ((self.w_max - self.cwnd_epoch) / self.c) ** (1.0 / 3.0)
            self.w_est = self.cwnd_epoch
            self._after_timeout = False
        t = now - self.epoch_start
        rtt = self.srtt or 0.0
        target = min(max(self.w_cubic(t + rtt), self._w), 1.5 * self._w)
        alpha = 1.0 if self.cwnd_prior and self.w_est >= self.cwnd_prior else self.alpha
        self.w_est += alpha * acked / self._w
        if self.reno_friendly and self.w_cubic(t) < self.w_est:
            self.region = "reno"
            self._w = max(self._w, self.w_est)
        else:
            self._w += (target - self._w) * acked / self._w
            self.region = "concave" if self._w < self.w_max else "convex"

    def _set_pacing(self) -> None:
        if self.paced and self.srtt:
            factor = 2.0 if self._w < self._ssthresh else 1.2
            self.pacing_rate = factor * self.cwnd / self.srtt

    def _save(self) -> None:
        self._saved = {
            k: getattr(self, k)
            for k in ("_w", "_ssthresh", "w_max", "k", "epoch_start", "cwnd_epoch", "w_est",
                      "cwnd_prior", "_after_timeout")
        }

    def _reduce(self, floor: float) -> None:
        """RFC 9438 4.6 and 4.7: the multiplicative decrease shared by every event."""
        self._adopt_engine_window()
        self._save()
        w = self._w
        if self.fast_convergence and w < self.w_max:
            self.w_max = w * (1.0 + self.beta) / 2.0
        else:
            self.w_max = w
        self.cwnd_prior = w
        ssthresh = w * self.beta
        self._w = max(ssthresh, floor)
        self._ssthresh = max(ssthresh, 2.0)
        self.epoch_start = None
        self.congestion_events += 1
        if self.hystart is not None:
            self.hystart.phase = "done"  # RFC 9406 4.3: only the initial slow start

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        self._reduce(2.0)
        self._in_recovery = True
        self.region = "recovery"
        self._publish()

    def _finish_recovery(self) -> None:
        self._in_recovery = False
        self._w = max(self._ssthresh, 1.0) if self._ssthresh != math.inf else self._w

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        self._adopt_engine_window()
        if self._in_recovery:
            self._finish_recovery()
        self.region = "slow_start" if self._w < self._ssthresh else "concave"
        self._publish()

    def on_timeout(self, in_flight: int, now: float) -> None:
        if not (self._in_recovery or self._timed_out):
            self._reduce(1.0)
        else:
            # the timer expired again before anything was delivered, or during a recovery
            # that already cut the window: ssthresh and W_max hold (RFC 5681 3.1, as Linux)
            self._adopt_engine_window()
        self._w = 1.0  # RFC 5681's loss window
        self._timed_out = True
        self._after_timeout = True
        self._in_recovery = False
        self.timeouts += 1
        self.region = "slow_start"
        self._publish()

    def on_ecn(self, in_flight: int, now: float) -> None:
        self._reduce(1.0)
        self.ecn_events += 1
        self._publish()

    def on_undo(self, now: float) -> None:
        """RFC 9438 4.9: the last congestion event was spurious; put back what it changed."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        self._adopt_engine_window()
        w = max(self._w, saved.pop("_w"))
        for k, v in saved.items():
            setattr(self, k, v)
        self._w = w
        self._in_recovery = False
        self.undos += 1
        self.region = "slow_start" if self._w < self._ssthresh else "concave"
        self._publish()

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        hs = self.hystart
        return {
            "region": self.region,
            "w_max": round(self.w_max * self.mss),
            "k": self.k,
            "epoch_start": self.epoch_start,
            "cwnd_epoch": round(self.cwnd_epoch * self.mss),
            "w_est": round(self.w_est * self.mss),
            "cwnd_prior": round(self.cwnd_prior * self.mss),
            "hystart": hs.phase if hs is not None else "off",
            "congestion_events": self.congestion_events,
            "timeouts": self.timeouts,
            "ecn_events": self.ecn_events,
            "undos": self.undos,
        }

"""BBR version 1 (draft-cardwell-iccrg-bbr-congestion-control-00, as Linux's tcp_bbr.c runs it)
on the ``layers.congestion`` contract.

BBR builds a model of the path from the engine's rate samples and sets the window and the
pacing rate from it, instead of reacting to loss:

* ``btl_bw``: the maximum delivery rate over the last ``bw_window_rounds`` (10) round trips;
  app-limited samples count only when they raise it; after an ACK that claims to deliver more
  than was in flight (an engine's accounting jump), samples whose flight spans it are skipped.
  A round trip ends when an ACK delivers data sent after the round began
  (``rs.prior_delivered`` reaches the delivered count at the round's start).
* ``min_rtt``: the minimum RTT, refreshed when a lower sample arrives or, once it is older
  than ``min_rtt_window`` (10 s), replaced by the current sample while PROBE_RTT drains the
  queue to measure it.

Modes: STARTUP paces at ``high_gain = 2/ln 2`` times ``btl_bw`` until the bandwidth stops
growing by 25 % for 3 rounds (the pipe is full); DRAIN paces at ``1/high_gain`` until the data
in flight fits one BDP; PROBE_BW cycles the pacing gain through ``1.25, 0.75, 1 x 6``, one
phase per ``min_rtt``, from a random phase (seeded by ``CongestionContext.seed``, never the
0.75 one); PROBE_RTT, entered when ``min_rtt`` is ``min_rtt_window`` old, holds the window at
4 segments for ``probe_rtt_duration`` (200 ms) and a round trip, then returns to PROBE_BW (or
STARTUP if the pipe was never full).

Window: ``cwnd = cwnd_gain * btl_bw * min_rtt + 3 * send_quantum``, rounded up to an even
number of segments, plus 2 segments in the 1.25 phase; it grows towards that target by the
bytes each ACK delivers (quickly, before the pipe is full) and never below 4 segments.
Pacing: ``pacing_rate = pacing_gain * btl_bw * (1 - pacing_margin)`` bytes/s (Linux paces 1 %
below the estimate); before the first bandwidth sample, ``high_gain * initial window / RTT``.

Loss: entering recovery saves the window and holds it at "packet conservation" (the data in
flight plus what each ACK delivers) for one round trip, then BBR's own target applies again;
newly lost bytes are taken off the window on every ACK; leaving recovery (or an undo) restores
the saved window. A retransmission timeout saves the window and restarts from one segment
(the engine retransmits), growing back by what each ACK delivers; once everything outstanding
at the timeout is delivered the saved window returns. BBR's window is its own: what an engine
writes to ``cwnd`` meanwhile (proportional rate reduction) is overridden at the next event,
as Linux's BBR, with its own ``cong_control``, bypasses PRR. ECN echoes are counted and
otherwise ignored, as in BBR v1.

Left out of draft-00 and kept out here: Linux's long-term bandwidth (policer) sampling and
the ACK-aggregation window allowance, both later additions to tcp_bbr.c.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from layers.congestion import CongestionContext, CongestionControlBase, RateSample
from layers.errors import ConfigurationError

__all__ = [
    "BBR",
    "DEFAULTS",
    "DRAIN",
    "PACING_GAIN_CYCLE",
    "PROBE_BW",
    "PROBE_RTT",
    "STARTUP",
    "WindowedMax",
    "bbr_settings",
]

STARTUP = "STARTUP"
DRAIN = "DRAIN"
PROBE_BW = "PROBE_BW"
PROBE_RTT = "PROBE_RTT"

#: PROBE_BW's pacing gains, one phase per min_rtt
PACING_GAIN_CYCLE: tuple[float, ...] = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
#: the random start phase is drawn among the last CYCLE_RAND + 1, i.e. never the 0.75 phase
_CYCLE_RAND = 7

#: the settings ``--set bbr.KEY=VALUE`` may change, with their defaults
DEFAULTS: Mapping[str, Any] = {
    "high_gain": 2.0 / math.log(2.0),
    "cwnd_gain": 2.0,
    "bw_window_rounds": 10,
    "min_rtt_window": 10.0,
    "probe_rtt_duration": 0.2,
    "min_cwnd_segments": 4,
    "pacing_margin": 0.01,
    "full_bw_growth": 0.25,
    "full_bw_rounds": 3,
}

_NO_SSTHRESH = 1 << 30


def bbr_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over :data:`DEFAULTS`, checked; :class:`ConfigurationError` names the fix."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"unknown bbr setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}"
        )
    s = {**DEFAULTS, **given}
    limits: dict[str, tuple[float, float, str]] = {
        "high_gain": (1.0, 10.0, "2/ln2 = 2.885"),
        "cwnd_gain": (1.0, 10.0, "2"),
        "bw_window_rounds": (1, 1000, "10"),
        "min_rtt_window": (0.01, 3600.0, "10 s"),
        "probe_rtt_duration": (0.0, 10.0, "0.2 s"),
        "min_cwnd_segments": (1, 100, "4"),
        "pacing_margin": (0.0, 0.5, "0.01"),
        "full_bw_growth": (0.0, 10.0, "0.25"),
        "full_bw_rounds": (1, 100, "3"),
    }
    for key, (lo, hi, default) in limits.items():
        v = s[key]
        integral = isinstance(DEFAULTS[key], int)
        ok_type = (isinstance(v, int) if integral else isinstance(v, (int, float)))
        if isinstance(v, bool) or not ok_type:
            kind = "an integer" if integral else "a number"
            raise ConfigurationError(f"bbr.{key} must be {kind}, not {v!r} (default {default})")
        if not lo <= v <= hi:
            raise ConfigurationError(
                f"bbr.{key}={v} is out of range; use {lo}..{hi} (default {default})"
            )
        s[key] = v if integral else float(v)
    return s


class WindowedMax:
    """The maximum of the samples taken in the last ``window`` rounds, exactly: a deque of
    (round, value) with values decreasing, so each sample enters and leaves it once."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._q: deque[tuple[int, float]] = deque()

    def update(self, value: float, round_count: int) -> None:
        """Add the sample of round ``round_count``; samples more than ``window`` rounds
        older leave (only here: without new samples the last maximum holds, as in Linux's
        minmax filter while the sender is app-limited)."""
        q = self._q
        while q and q[-1][1] <= value:
            q.pop()
        q.append((round_count, value))
        while round_count - q[0][0] > self.window:
            q.popleft()

    def get(self) -> float:
        return self._q[0][1] if self._q else 0.0

    def reset(self) -> None:
        self._q.clear()


class BBR(CongestionControlBase):
    """One connection's BBR v1; see the module docstring. Bytes and bytes/s on the contract."""

    name = "bbr"

    def __init__(self, ctx: CongestionContext) -> None:
        super().__init__(ctx)
        s = bbr_settings(ctx.settings)
        self.high_gain: float = s["high_gain"]
        self.drain_gain = 1.0 / self.high_gain
        self.probe_bw_cwnd_gain: float = s["cwnd_gain"]
        self.min_rtt_window: float = s["min_rtt_window"]
        self.probe_rtt_duration: float = s["probe_rtt_duration"]
        self.min_cwnd_segments: int = s["min_cwnd_segments"]
        self.pacing_margin: float = s["pacing_margin"]
        self.full_bw_threshold = 1.0 + s["full_bw_growth"]
        self.full_bw_rounds: int = s["full_bw_rounds"]
        self.rng = random.Random(ctx.seed)

        self.bw_filter = WindowedMax(s["bw_window_rounds"])
        self.min_rtt: float | None = None
        self.min_rtt_stamp = 0.0
        self.mode = STARTUP
        self.pacing_gain = self.high_gain
        self.cwnd_gain = self.high_gain
        self.round_count = 0
        self.round_start = False
        self.next_round_delivered = 0
        self.delivered = 0
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.full_bw_reached = False
        self.cycle_index = 0
        self.cycle_stamp = 0.0
        self.prior_cwnd = 0
        self.packet_conservation = False
        self.in_recovery = False
        self.in_loss = False
        self.probe_rtt_done_stamp: float | None = None
        self.probe_rtt_round_done = False
        self.idle_restart = False
        self.has_seen_rtt = False
        self.probe_rtt_count = 0
        self.ecn_echoes = 0
        self.pacing_rate = self._initial_pacing_rate(None)
        #: the window BBR chose; an engine's own writes to ``cwnd`` (PRR during recovery,
        #: ssthresh at its end) are overridden, as Linux's BBR overrides PRR
        self._cwnd = self.cwnd
        #: after a timeout: the delivered count at which everything outstanding then is
        #: delivered, when the window saved before the timeout comes back
        self._loss_end: int | None = None
        #: rate samples whose flight began before this delivered count are not trusted
        self._rate_barrier = 0
        #: ACKs that claimed to deliver more than was in flight
        self.bogus_samples = 0

    # --- the model ----------------------------------------------------------------------

    @property
    def btl_bw(self) -> float:
        """The bottleneck bandwidth estimate in bytes per second."""
        return self.bw_filter.get()

    def bdp(self, bw: float, gain: float) -> int:
        """``gain * bw * min_rtt`` in bytes (the initial window before any RTT sample)."""
        if self.min_rtt is None:
            return self.ctx.initial_cwnd * self.mss
        return math.ceil(bw * self.min_rtt * gain)

    def send_quantum(self) -> int:
        """Bytes the engine may send back to back (draft-00's BBRSetSendQuantum)."""
        rate = self.pacing_rate or 0.0
        if rate < 1.2e6 / 8:
            return self.mss
        if rate < 24e6 / 8:
            return 2 * self.mss
        return max(2 * self.mss, min(int(rate * 0.001), 65536))

    def inflight(self, bw: float, gain: float) -> int:
        """The window target for ``gain``: BDP plus room for quantised sends and delayed ACKs,
        an even number of segments, 2 more in the 1.25 phase (tcp_bbr.c's budget)."""
        w = self.bdp(bw, gain) + 3 * self.send_quantum()
        segs = -(-w // self.mss)
        segs += segs & 1
        if self.mode == PROBE_BW and self.cycle_index == 0:
            segs += 2
        return segs * self.mss

    def _initial_pacing_rate(self, rtt: float | None) -> float:
        # high_gain * initial window / RTT, with a nominal 1 ms before any RTT sample
        bw = self.ctx.initial_cwnd * self.mss / (rtt if rtt else 0.001)
        return self.high_gain * bw * (1.0 - self.pacing_margin)

    # --- events -------------------------------------------------------------------------

    def on_start(self, mss: int, now: float) -> None:
        self.mss = mss
        self.cwnd = self._cwnd = self.ctx.initial_cwnd * mss
        self.min_rtt_stamp = now
        self.cycle_stamp = now
        self.pacing_rate = self._initial_pacing_rate(None)

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        if app_limited and in_flight <= size:
            # restarting from idle: resume at the estimated rate, not a probing one
            self.idle_restart = True
            if self.mode == PROBE_BW:
                self._set_pacing_rate(self.btl_bw, 1.0)
            elif self.mode == PROBE_RTT:
                self.cwnd = self._cwnd
                self._check_probe_rtt_done(now)
                self._cwnd = self.cwnd

    def on_ack(self, rs: RateSample) -> None:
        self.mss = rs.mss
        self.cwnd = self._cwnd
        if self.in_recovery and not rs.in_recovery:
            self._restore()  # the engine left recovery without on_exit_recovery
        elif self.in_loss and self._loss_end is not None and rs.delivered_total >= self._loss_end:
            self._restore()  # everything outstanding at the timeout is delivered
        self.delivered = rs.delivered_total
        self._update_bw(rs)
        self._update_cycle_phase(rs)
        self._check_full_bw_reached(rs)
        self._check_drain(rs)
        self._update_min_rtt(rs)
        self._update_gains()
        bw = self.btl_bw
        self._set_pacing_rate(bw, self.pacing_gain, rs.srtt or rs.rtt)
        self._set_cwnd(rs, bw)
        self._cwnd = self.cwnd

    def _update_bw(self, rs: RateSample) -> None:
        self.round_start = False
        if rs.delivered <= 0 or rs.interval <= 0.0:
            return  # not a valid rate sample
        if rs.prior_delivered >= self.next_round_delivered:
            self.next_round_delivered = rs.delivered_total
            self.round_count += 1
            self.round_start = True
            self.packet_conservation = False
        if rs.delivered > rs.prior_in_flight + rs.mss:
            # one ACK cannot deliver more than was in flight: the engine counted data twice
            # (a scoreboard forgotten at a timeout and SACKed again, say). Samples that span
            # the jump would overstate the rate, and the max filter would keep them for 10
            # rounds: skip them, as tcp_rate.c does across SACK reneging.
            self._rate_barrier = rs.delivered_total
            self.bogus_samples += 1
        if rs.prior_delivered < self._rate_barrier:
            return
        bw = rs.delivery_rate
        if not rs.is_app_limited or bw >= self.btl_bw:
            self.bw_filter.update(bw, self.round_count)

    def _advance_cycle_phase(self, now: float) -> None:
        self.cycle_index = (self.cycle_index + 1) % len(PACING_GAIN_CYCLE)
        self.cycle_stamp = now

    def _update_cycle_phase(self, rs: RateSample) -> None:
        if self.mode != PROBE_BW or self.min_rtt is None:
            return
        full_length = rs.now - self.cycle_stamp > self.min_rtt
        gain = self.pacing_gain
        if gain == 1.0:
            nxt = full_length
        elif gain > 1.0:
            # probe until the extra data is in flight, or loss says it does not fit
            nxt = full_length and (
                rs.newly_lost > 0 or rs.prior_in_flight >= self.inflight(self.btl_bw, gain)
            )
        else:
            # drain what the probe queued, or give up after a min_rtt
            nxt = full_length or rs.prior_in_flight <= self.inflight(self.btl_bw, 1.0)
        if nxt:
            self._advance_cycle_phase(rs.now)

    def _check_full_bw_reached(self, rs: RateSample) -> None:
        if self.full_bw_reached or not self.round_start or rs.is_app_limited:
            return
        if self.btl_bw >= self.full_bw * self.full_bw_threshold:
            self.full_bw = self.btl_bw
            self.full_bw_count = 0
            return
        self.full_bw_count += 1
        self.full_bw_reached = self.full_bw_count >= self.full_bw_rounds

    def _check_drain(self, rs: RateSample) -> None:
        if self.mode == STARTUP and self.full_bw_reached:
            self.mode = DRAIN
            self.ssthresh = self.inflight(self.btl_bw, 1.0)
        if self.mode == DRAIN and rs.in_flight <= self.inflight(self.btl_bw, 1.0):
            self._enter_probe_bw(rs.now)

    def _enter_probe_bw(self, now: float) -> None:
        self.mode = PROBE_BW
        self.cycle_index = len(PACING_GAIN_CYCLE) - 1 - self.rng.randrange(_CYCLE_RAND)
        self._advance_cycle_phase(now)

    def _reset_mode(self, now: float) -> None:
        if self.full_bw_reached:
            self._enter_probe_bw(now)
        else:
            self.mode = STARTUP

    def _update_min_rtt(self, rs: RateSample) -> None:
        now = rs.now
        expired = self.min_rtt is not None and now > self.min_rtt_stamp + self.min_rtt_window
        # whole microseconds, as tcp_bbr.c keeps min_rtt_us: an RTT lower by float noise is
        # not a new minimum and must not put PROBE_RTT off for another window
        rtt = round(rs.rtt * 1e6) / 1e6 if rs.rtt is not None else 0.0
        if rtt > 0 and (self.min_rtt is None or rtt < self.min_rtt or expired):
            self.min_rtt = rtt
            self.min_rtt_stamp = now
        if (
            self.probe_rtt_duration > 0
            and expired
            and not self.idle_restart
            and self.mode != PROBE_RTT
        ):
            self.mode = PROBE_RTT
            self.probe_rtt_count += 1
            self._save_cwnd()
            self.probe_rtt_done_stamp = None
        if self.mode == PROBE_RTT:
            if (
                self.probe_rtt_done_stamp is None
                and rs.in_flight <= self.min_cwnd_segments * self.mss
            ):
                # the queue is drained: hold for probe_rtt_duration and one round trip
                self.probe_rtt_done_stamp = now + self.probe_rtt_duration
                self.probe_rtt_round_done = False
                self.next_round_delivered = rs.delivered_total
            elif self.probe_rtt_done_stamp is not None:
                if self.round_start:
                    self.probe_rtt_round_done = True
                if self.probe_rtt_round_done:
                    self._check_probe_rtt_done(now)
        if rs.delivered > 0:
            self.idle_restart = False

    def _check_probe_rtt_done(self, now: float) -> None:
        if self.probe_rtt_done_stamp is None or now <= self.probe_rtt_done_stamp:
            return
        self.min_rtt_stamp = now  # the new min_rtt holds for another window
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        self.probe_rtt_done_stamp = None
        self._reset_mode(now)

    def _update_gains(self) -> None:
        mode = self.mode
        if mode == STARTUP:
            self.pacing_gain = self.cwnd_gain = self.high_gain
        elif mode == DRAIN:
            self.pacing_gain = self.drain_gain
            self.cwnd_gain = self.high_gain
        elif mode == PROBE_BW:
            self.pacing_gain = PACING_GAIN_CYCLE[self.cycle_index]
            self.cwnd_gain = self.probe_bw_cwnd_gain
        else:
            self.pacing_gain = self.cwnd_gain = 1.0

    def _set_pacing_rate(self, bw: float, gain: float, rtt: float | None = None) -> None:
        if not self.has_seen_rtt and rtt:
            self.has_seen_rtt = True
            self.pacing_rate = self._initial_pacing_rate(rtt)
        rate = gain * bw * (1.0 - self.pacing_margin)
        if self.full_bw_reached or rate > (self.pacing_rate or 0.0):
            self.pacing_rate = rate

    def _set_cwnd(self, rs: RateSample, bw: float) -> None:
        acked = rs.delivered
        min_cwnd = self.min_cwnd_segments * self.mss
        cwnd = self.cwnd
        if acked > 0:
            if rs.newly_lost > 0:
                cwnd = max(cwnd - rs.newly_lost, self.mss)
            if self.packet_conservation:
                # one round trip of packet conservation at the start of recovery
                cwnd = max(cwnd, rs.in_flight + acked)
            else:
                target = self.inflight(bw, self.cwnd_gain)
                if self.full_bw_reached:
                    cwnd = min(cwnd + acked, target)
                elif cwnd < target or rs.delivered_total < self.ctx.initial_cwnd * self.mss:
                    cwnd += acked
                cwnd = max(cwnd, min_cwnd)
        if self.mode == PROBE_RTT:
            cwnd = min(cwnd, min_cwnd)
        self.cwnd = cwnd

    # --- loss, timeout, undo --------------------------------------------------------------

    def _save_cwnd(self) -> None:
        if not (self.in_recovery or self.in_loss) and self.mode != PROBE_RTT:
            self.prior_cwnd = self.cwnd
        else:
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)

    def _restore(self) -> None:
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        self.in_recovery = self.in_loss = False
        self.packet_conservation = False
        self._loss_end = None

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        self.cwnd = self._cwnd
        self._save_cwnd()
        self.in_recovery = True
        # packet conservation for one round trip, counted from here
        self.packet_conservation = True
        self.next_round_delivered = self.delivered
        self.cwnd = self._cwnd = max(in_flight + self.mss, self.mss)

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        self.cwnd = self._cwnd
        self._restore()
        self._cwnd = self.cwnd

    def on_timeout(self, in_flight: int, now: float) -> None:
        self.cwnd = self._cwnd
        self._save_cwnd()
        self.in_loss = True
        self.in_recovery = False
        self.packet_conservation = False
        self.full_bw = 0.0  # as tcp_bbr.c: the bandwidth plateau is measured afresh
        self._loss_end = self.delivered + in_flight
        self.cwnd = self._cwnd = self.mss

    def on_undo(self, now: float) -> None:
        self.cwnd = self._cwnd
        self.full_bw = 0.0
        self.full_bw_count = 0
        self._restore()
        self._cwnd = self.cwnd

    def on_ecn(self, in_flight: int, now: float) -> None:
        self.ecn_echoes += 1

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        return {
            "mode": self.mode,
            "btl_bw": self.btl_bw,
            "min_rtt": self.min_rtt,
            "pacing_gain": self.pacing_gain,
            "cwnd_gain": self.cwnd_gain,
            "round_count": self.round_count,
            "full_bw": self.full_bw,
            "full_bw_reached": self.full_bw_reached,
            "cycle_index": self.cycle_index,
            "bdp": self.bdp(self.btl_bw, 1.0) if self.btl_bw else None,
            "prior_cwnd": self.prior_cwnd,
            "packet_conservation": self.packet_conservation,
            "probe_rtt_count": self.probe_rtt_count,
            "bogus_samples": self.bogus_samples,
            "ecn_echoes": self.ecn_echoes,
        }

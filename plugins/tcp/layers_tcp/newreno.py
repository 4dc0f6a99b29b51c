"""NewReno: the tcp plugin's own congestion control, written against :mod:`layers.congestion`
like any third-party algorithm.

Window growth is RFC 5681 slow start and congestion avoidance with RFC 3465 byte counting
(L = 2 segments per ACK in slow start; an ACK of a super-segment the link cut into segments
(TSO) counts as the ACKs those segments would have drawn, because a receiver whose offloads
merge them acknowledges it all at once, and capping that stretch ACK at two segments would
grow the window by two segments per 64 KiB); the reductions are RFC 5681/6582's: half the flight
on loss (at least two segments), one segment after a retransmission timeout, and on leaving
fast recovery RFC 6582's ``min(ssthresh, FlightSize + SMSS)`` (3.2 step 3, option 1).

The loss-recovery bookkeeping NewReno needs is beside this module, in
:class:`layers_tcp.recovery.LossRecovery`, because it is the same for every algorithm:
duplicate ACK counting, RFC 6582's ``recover`` point (no second reduction for the window
being recovered) and partial-ACK rule (the next unacknowledged segment is lost too and,
without SACK, resent at once), the pipe (:mod:`layers_tcp.sack`) and PRR (RFC 6937), which
sets ``cwnd`` during fast recovery towards the ``ssthresh`` chosen here, so NewReno does not
grow in recovery. This class only chooses the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from layers.congestion import CongestionContext, CongestionControlBase, RateSample


class NewReno(CongestionControlBase):
    """RFC 5681 + RFC 3465 (L=2) + RFC 6582, in bytes."""

    name = "newreno"

    def __init__(self, ctx: CongestionContext) -> None:
        # the base by name, not super(): one per connection, and super() costs a proxy
        CongestionControlBase.__init__(self, ctx)
        #: bytes acknowledged in congestion avoidance since cwnd last grew (RFC 3465)
        self.bytes_acked = 0
        #: a timeout episode is under way (only its first timeout saves state for undo)
        self._in_timeout = False
        #: the size of the latest transmission (a TSO super-segment's, else at most one MSS)
        self._send_unit = 0

    def on_start(self, mss: int, now: float) -> None:
        CongestionControlBase.on_start(self, mss, now)
        self.bytes_acked = 0

    def on_packet_sent(self, size: int, in_flight: int, now: float, app_limited: bool) -> None:
        self._send_unit = size

    def on_ack(self, rs: RateSample) -> None:
        self.mss = mss = rs.mss
        if rs.in_recovery or rs.ece:
            # the engine's PRR sets the window during fast recovery; an ACK echoing
            # congestion (ECE) does not open it (RFC 3168 6.1.2)
            return
        self._in_timeout = False
        # RFC 5681 grows on newly acknowledged bytes: SACKed data counts when the
        # cumulative ACK covers it, and duplicate ACKs do not open the window
        acked = rs.newly_acked
        if acked <= 0:
            return
        if self.cwnd < self.ssthresh:
            # slow start, at most L = 2 segments per ACK (RFC 3465 2.2), an ACK of a
            # super-segment standing for one ACK per two of the segments it became
            limit = 2 * mss if self._send_unit <= 2 * mss else self._send_unit
            self.cwnd += acked if acked < limit else limit
            if self.cwnd > self.ssthresh:
                # the excess over ssthresh counts towards congestion avoidance
                self.bytes_acked = self.cwnd - self.ssthresh
                self.cwnd = self.ssthresh
            return
        # congestion avoidance: one segment per window of acknowledged bytes (RFC 3465 2.1)
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += mss

    def _halve(self, in_flight: int) -> None:
        # RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS)
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.bytes_acked = 0

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        self.save_for_undo()
        self._halve(in_flight)

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        # RFC 6582 3.2 step 3, option 1: min(ssthresh, FlightSize + SMSS), no burst after
        self.cwnd = max(min(self.ssthresh, max(in_flight, 0) + self.mss), self.mss)

    def on_timeout(self, in_flight: int, now: float) -> None:
        if not self._in_timeout:
            # only the first timeout of an episode is undone to (RFC 5681: ssthresh is held
            # for a segment retransmitted by the timer again; the engine passes the flight)
            self.save_for_undo()
            self._in_timeout = True
        self._halve(in_flight)
        self.cwnd = self.mss  # RFC 5681: the loss window, one segment

    def on_undo(self, now: float) -> None:
        super().on_undo(now)
        self._in_timeout = False
        self.bytes_acked = 0

    def on_ecn(self, in_flight: int, now: float) -> None:
        # RFC 3168 6.1.2: respond as to a loss, once per window (the engine rate-limits);
        # nothing is resent, so the window drops straight to ssthresh, and nothing is undone
        self._halve(in_flight)
        self.cwnd = max(self.ssthresh, self.mss)

    def state(self) -> Mapping[str, int | float | str | bool | None]:
        return {"bytes_acked": self.bytes_acked}

"""A small packet-level path model that drives a congestion control in isolation.

One bulk sender, one bottleneck (``rate`` bytes/s serialisation, drop-tail queue of
``queue`` bytes), a fixed base RTT (or a function of time), one ACK per packet. The sender
honours the algorithm's ``cwnd`` and ``pacing_rate`` (Linux-style: each segment's earliest
departure is the previous one's plus ``size / pacing_rate``), measures delivery rate as
draft-cheng-iccrg-delivery-rate-estimation says, detects a loss when three later
transmissions are acknowledged, and calls the contract's events in the order an engine
would: ``on_packet_sent``, ``on_enter_recovery`` before the ACK that detected the loss,
``on_ack``, ``on_exit_recovery`` once everything outstanding at the start of recovery is
delivered.

It is a test instrument, not a TCP: no sequence numbers, receive window or RTO. Everything
runs on its own virtual timeline, so results are exact and repeatable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import attrs

from layers.congestion import CongestionControl, RateSample


@attrs.define(slots=True)
class _Tx:
    tx: int
    size: int
    sent: float
    delivered: int
    delivered_time: float
    first_sent_time: float
    app_limited: bool
    retransmit: bool


@attrs.define(slots=True)
class AckPoint:
    """The sender after one ACK."""

    time: float
    cwnd: int
    pacing_rate: float | None
    in_flight: int
    delivered: int
    rtt: float | None
    state: dict[str, Any]


class PathSim:
    def __init__(
        self,
        cc: CongestionControl,
        *,
        rate: float,
        rtt: float | Callable[[float], float],
        queue: int,
        mss: int = 1448,
        drop: Callable[[int, float], bool] | None = None,
        record_state: bool = True,
    ) -> None:
        self.cc = cc
        self.rate = rate
        self._rtt = rtt if callable(rtt) else (lambda _t, r=rtt: r)
        self.queue_limit = queue
        self.mss = mss
        self.drop = drop
        self.record_state = record_state
        self.now = 0.0
        self._events: list[tuple[float, int, str, int]] = []
        self._order = 0
        self._outstanding: dict[int, _Tx] = {}
        self._to_retransmit = 0
        self.next_tx = 0
        self.delivered = 0
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self.in_flight = 0
        self.link_free_at = 0.0
        self.next_send_time = 0.0
        self.in_recovery = False
        self.recovery_point = 0
        self.min_rtt: float | None = None
        self.srtt: float | None = None
        self.drops = 0
        self.trace: list[AckPoint] = []
        self.queue_samples: list[tuple[float, int]] = []
        self._send_armed = False
        self.on_ack_hook: Callable[[PathSim, RateSample], None] | None = None
        cc.on_start(mss, 0.0)

    def _push(self, t: float, kind: str, tx: int) -> None:
        self._order += 1
        heapq.heappush(self._events, (t, self._order, kind, tx))

    # --- sender -------------------------------------------------------------------------

    def _try_send(self) -> None:
        cc = self.cc
        while self.in_flight + self.mss <= cc.cwnd:
            rate = cc.pacing_rate
            if rate and self.now < self.next_send_time - 1e-12:
                if not self._send_armed:
                    self._send_armed = True
                    self._push(self.next_send_time, "send", -1)
                return
            retransmit = self._to_retransmit > 0
            if retransmit:
                self._to_retransmit -= 1
            self._send_one(retransmit)
            if rate:
                self.next_send_time = max(self.now, self.next_send_time) + self.mss / rate

    def _send_one(self, retransmit: bool) -> None:
        now = self.now
        if self.in_flight == 0:
            self.first_sent_time = self.delivered_time = now
        tx = self.next_tx
        self.next_tx += 1
        p = _Tx(tx, self.mss, now, self.delivered, self.delivered_time, self.first_sent_time,
                False, retransmit)
        self._outstanding[tx] = p
        self.in_flight += self.mss
        self.cc.on_packet_sent(self.mss, self.in_flight, now, False)
        backlog = max(0.0, self.link_free_at - now) * self.rate
        self.queue_samples.append((now, int(backlog)))
        if backlog + self.mss > self.queue_limit or (self.drop is not None and
                                                     self.drop(tx, now)):
            self.drops += 1
            return  # dropped: never acknowledged
        depart = max(now, self.link_free_at) + self.mss / self.rate
        self.link_free_at = depart
        self._push(depart + self._rtt(depart), "ack", tx)

    # --- receiver side of the sender ---------------------------------------------------

    def _on_ack(self, tx: int) -> None:
        p = self._outstanding.pop(tx, None)
        if p is None:
            return  # already declared lost and retransmitted
        now = self.now
        prior_in_flight = self.in_flight
        self.in_flight -= p.size
        self.delivered += p.size
        self.delivered_time = now
        self.first_sent_time = p.sent
        rtt = None if p.retransmit else now - p.sent
        if rtt is not None:
            self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
            self.srtt = rtt if self.srtt is None else 0.875 * self.srtt + 0.125 * rtt
        interval = max(p.sent - p.first_sent_time, now - p.delivered_time)
        delivered_in = self.delivered - p.delivered
        valid = interval > 0 and (self.min_rtt is None or interval >= self.min_rtt)
        # loss detection: three later transmissions delivered
        newly_lost = 0
        lost = []
        for old in self._outstanding:  # in transmission order
            if old >= tx - 2:
                break
            lost.append(old)
        for old in lost:
            del self._outstanding[old]
            self.in_flight -= self.mss
            newly_lost += self.mss
            self._to_retransmit += 1
        if newly_lost and not self.in_recovery:
            self.in_recovery = True
            self.recovery_point = self.next_tx
            self.cc.on_enter_recovery(self.in_flight, now)
        rs = RateSample(
            now=now, delivered=p.size, newly_acked=p.size, newly_lost=newly_lost,
            prior_delivered=p.delivered, delivered_total=self.delivered,
            interval=interval if valid else 0.0,
            delivery_rate=delivered_in / interval if valid else 0.0,
            is_app_limited=p.app_limited, rtt=rtt, min_rtt=self.min_rtt, srtt=self.srtt,
            prior_in_flight=prior_in_flight, in_flight=self.in_flight, ece=False,
            in_recovery=self.in_recovery, mss=self.mss,
        )
        self.cc.on_ack(rs)
        if self.on_ack_hook is not None:
            self.on_ack_hook(self, rs)
        oldest = next(iter(self._outstanding), self.next_tx)
        if self.in_recovery and self._to_retransmit == 0 and oldest >= self.recovery_point:
            self.in_recovery = False
            self.cc.on_exit_recovery(self.in_flight, now)
        self.trace.append(AckPoint(
            now, self.cc.cwnd, self.cc.pacing_rate, self.in_flight, self.delivered, rtt,
            dict(self.cc.state()) if self.record_state else {},
        ))

    def run_until(self, until: float) -> None:
        self._try_send()
        while self._events and self._events[0][0] <= until:
            t, _, kind, tx = heapq.heappop(self._events)
            self.now = t
            if kind == "ack":
                self._on_ack(tx)
            else:
                self._send_armed = False
            self._try_send()
        self.now = until

    def queue_between(self, start: float, end: float) -> list[int]:
        """Bottleneck backlog (bytes) seen by packets arriving in [start, end)."""
        return [q for t, q in self.queue_samples if start <= t < end]

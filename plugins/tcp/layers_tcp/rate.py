"""Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation), the way Linux's
``tcp_rate.c`` does it.

Each transmission (a segment, or a TSO super-segment as one record) remembers the
connection's delivery state when it left: ``C.delivered`` and ``C.delivered_time``, the
start of the current send flight ``C.first_sent_time``, whether the sender was
application-limited, and its own send time. When an ACK delivers data (cumulatively or by
SACK), the most recently sent of the delivered records gives the sample: the bytes delivered
since it left over the longer of its send interval and its ACK interval.

Only records for data in flight are kept, in a list ordered by sequence number; the common
cumulative ACK pops them from the front. The records are also RACK's per-segment transmit
times (RFC 8985, :mod:`layers_tcp.rack`): with ``collect`` set, each ACK leaves the records it
newly delivered in ``newly_delivered``, and RACK marks records ``LOST``.
"""

from __future__ import annotations

from collections import deque

#: record fields (a list per transmission)
(START, END, SENT, DELIVERED, DELIVERED_TIME, FIRST_SENT, APP_LIMITED, RETRANS, SACKED,
 LOST) = range(10)


#: the record queues of a released estimator (TIME-WAIT): empty, shared, never added to
_NO_RECORDS: deque[list] = deque()
_NO_DELIVERED: list[list] = []


class RateEstimator:
    """One connection's delivery state (the draft's ``C.*``) and its in-flight records."""

    __slots__ = (
        "app_limited", "collect", "delivered", "delivered_time", "first_sent_time", "interval",
        "last_rtt", "newly_delivered", "prior_delivered", "rate", "rate_app_limited", "records",
    )

    def __init__(self) -> None:
        #: C.delivered: bytes delivered to the peer so far (acknowledged or SACKed)
        self.delivered = 0
        #: C.delivered_time: when C.delivered last changed
        self.delivered_time = 0.0
        #: C.first_sent_time: send time of the segment that started the current flight
        self.first_sent_time = 0.0
        #: C.app_limited: 0, or the delivered count at which the app-limited phase ends
        self.app_limited = 0
        #: in-flight transmissions, ordered by sequence number
        self.records: deque[list] = deque()
        # the last sample
        self.rate = 0.0
        self.interval = 0.0
        self.prior_delivered = 0
        self.rate_app_limited = False
        #: the RTT of the most recently sent record this ACK delivered (never retransmitted)
        self.last_rtt: float | None = None
        #: keep the records each ACK delivers in ``newly_delivered`` (RACK reads them)
        self.collect = False
        self.newly_delivered: list[list] = []

    def release(self) -> None:
        """TIME-WAIT: nothing is in flight nor will be; the (empty) record queues go, the
        figures stay for reports (``delivered``, ``app_limited``)."""
        self.records = _NO_RECORDS
        self.newly_delivered = _NO_DELIVERED

    def on_sent(self, start: int, end: int, now: float, in_flight_before: int,
                retrans: bool) -> None:
        """A transmission of [start, end) left at ``now``; ``in_flight_before`` is what was
        in flight before it (draft 3.2: a send into an empty pipe starts a new flight)."""
        if in_flight_before <= 0:
            self.first_sent_time = now
            self.delivered_time = now
        rec = [start, end, now, self.delivered, self.delivered_time, self.first_sent_time,
               self.app_limited != 0, retrans, False, False]
        records = self.records
        if not retrans or not records or records[-1][START] < start:
            records.append(rec)
            return
        # a retransmission: replace what covered [start, end) (split a larger record)
        out: deque[list] = deque()
        placed = False
        for r in records:
            if r[END] <= start or r[START] >= end:
                if not placed and r[START] >= end:
                    out.append(rec)
                    placed = True
                out.append(r)
                continue
            if r[START] < start:
                head = list(r)
                head[END] = start
                out.append(head)
            if not placed:
                out.append(rec)
                placed = True
            if r[END] > end:
                tail = list(r)
                tail[START] = end
                out.append(tail)
        if not placed:
            out.append(rec)
        self.records = out

    def mark_app_limited(self, in_flight: int) -> None:
        """Draft 3.4: the sender ran out of data with room in the window; samples taken until
        what is in flight now is delivered are app-limited."""
        self.app_limited = (self.delivered + in_flight) or 1

    def on_ack(self, una: int, sacked: list[tuple[int, int]] | None, delivered: int,
               now: float) -> bool:
        """An ACK moved SND.UNA to ``una`` and/or SACKed more (``sacked``: the scoreboard, or
        None when this ACK SACKed nothing new), delivering ``delivered`` new bytes. Updates
        the sample; returns whether it is valid (a rate could be measured)."""
        self.delivered += delivered
        self.delivered_time = now
        records = self.records
        newest: list | None = None
        collect = self.collect
        if collect:
            got = self.newly_delivered = []
        # cumulatively acknowledged records leave
        while records and records[0][END] <= una:
            r = records.popleft()
            if not r[SACKED]:
                if newest is None or r[SENT] >= newest[SENT]:
                    newest = r
                if collect:
                    got.append(r)
        if sacked:
            # records entirely inside a SACKed range are delivered (once)
            i = 0
            n = len(sacked)
            for r in records:
                if r[SACKED]:
                    continue
                s = r[START]
                while i < n and sacked[i][1] <= s:
                    i += 1
                if i == n:
                    break
                a, b = sacked[i]
                if a <= s and r[END] <= b:
                    r[SACKED] = True
                    if newest is None or r[SENT] >= newest[SENT]:
                        newest = r
                    if collect:
                        got.append(r)
        if self.app_limited and self.delivered > self.app_limited:
            self.app_limited = 0
        self.last_rtt = None
        if newest is None:
            return False
        if not newest[RETRANS]:
            self.last_rtt = now - newest[SENT]
        self.prior_delivered = newest[DELIVERED]
        self.rate_app_limited = newest[APP_LIMITED]
        # the next flight's start is this record's send time (draft 3.3)
        self.first_sent_time = newest[SENT]
        send_elapsed = newest[SENT] - newest[FIRST_SENT]
        ack_elapsed = now - newest[DELIVERED_TIME]
        interval = send_elapsed if send_elapsed > ack_elapsed else ack_elapsed
        self.interval = interval
        if interval <= 0.0:
            self.rate = 0.0
            return False
        self.rate = (self.delivered - newest[DELIVERED]) / interval
        return True

    def forget(self) -> None:
        """A timeout: what was in flight is retransmitted as new records (SACK reneging)."""
        for r in self.records:
            r[SACKED] = False
            r[LOST] = False

    def clear(self) -> None:
        self.records.clear()

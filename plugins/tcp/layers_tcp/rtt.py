"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

#: clock granularity G of RFC 6298 (our clocks are far finer; 1 ms keeps RTTVAR meaningful)
CLOCK_GRANULARITY = 0.001


class RttEstimator:
    """SRTT/RTTVAR with the RFC 6298 gains (1/8, 1/4), bounded by ``rto_min``/``rto_max``.

    Karn's algorithm is the caller's part: samples are only taken from segments that were
    not retransmitted, or from timestamp echoes (RFC 7323), which are unambiguous."""

    __slots__ = ("backoff", "rto", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(self, initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.rto = min(max(initial, rto_min), rto_max)
        #: exponent of the current exponential backoff
        self.backoff = 0

    def sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        var = 4 * self.rttvar
        rto = self.srtt + (var if var > CLOCK_GRANULARITY else CLOCK_GRANULARITY)
        # min(max(rto, rto_min), rto_max) without the calls: a sample comes with every ACK
        if rto < self.rto_min:
            rto = self.rto_min
        self.rto = rto if rto < self.rto_max else self.rto_max
        self.backoff = 0

    def current(self) -> float:
        """The RTO with the current backoff applied (RFC 6298 5.5)."""
        return min(self.rto * (1 << self.backoff), self.rto_max)

    def back_off(self) -> None:
        if self.rto * (1 << self.backoff) < self.rto_max:
            self.backoff += 1

    def reset_backoff(self) -> None:
        self.backoff = 0

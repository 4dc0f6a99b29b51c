"""Token buckets for ICMP output, shaped like Linux's two limits (RFC 1812 4.3.2.8).

* A global bucket: ``rate`` messages per second, at most ``burst`` at once
  (Linux ``icmp_msgs_per_sec`` = 1000, ``icmp_msgs_burst`` = 50).
* A per-destination bucket: one message per ``interval`` seconds on average, bursts of
  ``HOST_BURST_FACTOR`` (Linux ``icmp_ratelimit`` = 1000 ms and ``XRLIM_BURST_FACTOR`` = 6; a
  destination not seen before starts with a full bucket).

Both are driven by the time the caller passes in (the stack's clock), never a real clock.
"""

from __future__ import annotations

HOST_BURST_FACTOR = 6
#: per-destination entries kept before stale ones are forgotten
HOST_TABLE_LIMIT = 4096


class GlobalBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def available(self, now: float) -> bool:
        """Whether a message may go now (refills; consumes nothing)."""
        if self.rate <= 0:
            return True
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.last = now
        return self.tokens >= 1.0

    def consume(self) -> None:
        if self.rate > 0:
            self.tokens -= 1.0

    def allow(self, now: float) -> bool:
        if self.available(now):
            self.consume()
            return True
        return False


class HostBuckets:
    """Per-destination limiter. Tokens are measured in seconds, as Linux's inet_peer does."""

    __slots__ = ("_table", "cap", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.cap = interval * HOST_BURST_FACTOR
        #: destination -> (tokens, last update)
        self._table: dict[int, tuple[float, float]] = {}

    def allow(self, dst: int, now: float) -> bool:
        if self.interval <= 0:
            return True
        entry = self._table.get(dst)
        if entry is None:
            if len(self._table) >= HOST_TABLE_LIMIT:
                self._forget_stale(now)
            tokens = self.cap
        else:
            tokens = min(self.cap, entry[0] + max(0.0, now - entry[1]))
        allowed = tokens >= self.interval
        if allowed:
            tokens -= self.interval
        self._table[dst] = (tokens, now)
        return allowed

    def _forget_stale(self, now: float) -> None:
        # An entry whose bucket has refilled is indistinguishable from a new one.
        cap = self.cap
        stale = [d for d, (t, last) in self._table.items() if t + (now - last) >= cap]
        for d in stale:
            del self._table[d]
        if len(self._table) >= HOST_TABLE_LIMIT:
            self._table.clear()

    def __len__(self) -> int:
        return len(self._table)

"""The stack's timer queue and a virtual clock.

Protocol code schedules with ``stack.call_at``/``stack.call_later`` and reads ``stack.now``;
it never reads a real clock. A runner decides what time it is: the asyncio runner uses the
loop's monotonic clock, :class:`VirtualClock` lets tests jump through minutes of RTO backoff
and TIME-WAIT in microseconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class Timer:
    """A scheduled call. ``cancel()`` is O(1); cancelled entries are skipped lazily."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.6f} {getattr(self.callback, '__qualname__', '?')}{state}>"


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Timer | None:
        """The earliest uncancelled timer due at ``now``, removed from the queue, or None."""
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            return timer
        return None

    def clear(self) -> None:
        for _, _, t in self._heap:
            t.cancelled = True
        self._heap.clear()


class VirtualClock:
    """A clock that moves only when told to. Call it to read the time."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance_to(self, when: float) -> None:
        if when > self.time:
            self.time = when

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


def _cancelled_callback(*args: Any) -> None:
    """What a cancelled timer calls (never: cancelled entries are skipped); it holds
    nothing, so cancelling releases the callback's bound object and arguments at once."""


class Timer:
    """A scheduled call. ``cancel()`` is O(1) and drops the callback and arguments at once (so
    a cancelled timer pins no memory); the queue skips cancelled entries lazily and compacts
    itself when they outnumber the live ones."""

    __slots__ = ("args", "callback", "cancelled", "queue", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        #: the queue holding this timer until it runs or is dropped
        self.queue: TimerQueue | None = None

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _cancelled_callback
        self.args = ()
        queue = self.queue
        if queue is not None:
            self.queue = None
            queue._cancelled_one()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.6f} {getattr(self.callback, '__qualname__', '?')}{state}>"


#: a queue compacts only above this many entries (below it, skipping is cheaper)
_COMPACT_MIN = 64


class TimerQueue:
    """A heap of timers. Its size stays proportional to the live timers: when cancelled
    entries exceed half of the heap, it is rebuilt without them (O(n), amortised O(1) per
    cancel), so a flood that arms and cancels timers cannot grow it past twice the live
    ones."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        #: cancelled entries still in the heap
        self._cancelled = 0

    def __len__(self) -> int:
        """The live (uncancelled) timers."""
        return len(self._heap) - self._cancelled

    @property
    def entries(self) -> int:
        """The heap's size, cancelled entries included (what memory it holds)."""
        return len(self._heap)

    def push(self, timer: Timer) -> None:
        if timer.cancelled:
            return
        timer.queue = self
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        heap = self._heap
        if self._cancelled * 2 > len(heap) and len(heap) > _COMPACT_MIN:
            heap[:] = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(heap)
            self._cancelled = 0

    def _pop_cancelled(self) -> None:
        heapq.heappop(self._heap)
        self._cancelled -= 1

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            self._pop_cancelled()
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Timer | None:
        """The earliest uncancelled timer due at ``now``, removed from the queue, or None."""
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer.cancelled:
                self._pop_cancelled()
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            timer.queue = None
            return timer
        return None

    def clear(self) -> None:
        for _, _, t in self._heap:
            t.queue = None
            t.cancel()
        self._heap.clear()
        self._cancelled = 0


class VirtualClock:
    """A clock that moves only when told to. Call it to read the time."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance_to(self, when: float) -> None:
        if when > self.time:
            self.time = when

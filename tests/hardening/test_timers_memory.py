"""Cancelled timers hold nothing, and the heap stays proportional to the live timers."""

from __future__ import annotations

import gc
import weakref

from layers.stack import Stack
from layers.timers import Timer, TimerQueue, VirtualClock


class Payload:
    pass


def noop(*args: object) -> None:
    pass


def test_cancel_releases_the_callback_and_its_arguments() -> None:
    q = TimerQueue()
    keep = Timer(100.0, noop, ())  # a live timer ahead of it: lazy skipping never reaches it
    q.push(keep)
    payload = Payload()
    ref = weakref.ref(payload)
    t = Timer(200.0, lambda p: None, (payload,))
    q.push(t)
    del payload
    gc.collect()
    assert ref() is not None
    t.cancel()
    gc.collect()
    assert ref() is None, "the cancelled timer still pins its argument"
    assert t.cancelled and len(q) == 1


def test_the_heap_is_compacted_when_cancelled_entries_are_the_majority() -> None:
    q = TimerQueue()
    live = [Timer(1000.0 + i, noop, ()) for i in range(100)]
    for t in live:
        q.push(t)
    for i in range(100_000):  # a flood arming and cancelling one timer per frame
        t = Timer(10.0 + i, noop, ())
        q.push(t)
        t.cancel()
        assert q.entries <= 2 * len(q) + 65
    assert len(q) == 100
    # the queue still yields the live timers in order, and only them
    got = []
    while (due := q.pop_due(1e9)) is not None:
        got.append(due)
    assert got == live and q.entries == 0


def test_cancelling_twice_or_after_it_ran_changes_nothing() -> None:
    q = TimerQueue()
    ts = [Timer(float(i), noop, ()) for i in range(200)]
    for t in ts:
        q.push(t)
    ran = q.pop_due(0.0)
    assert ran is ts[0]
    ran.cancel()  # after it ran: not in the heap any more
    ts[1].cancel()
    ts[1].cancel()
    assert len(q) == 198 and q.entries == 199
    assert q.next_deadline() == 2.0 and q.entries == 198


def test_a_stack_evicting_reassembly_queues_keeps_its_heap_small() -> None:
    clock = VirtualClock()
    s = Stack([], clock=clock)
    for i in range(10_000):
        t = s.call_later(30.0, noop, bytes(1000))
        t.cancel()
        s.call_later(1.0 + i, noop)  # live ones keep accumulating
        if i % 1000 == 0:
            clock.advance_to(clock.time + 1)
            s.poll()
    assert s.timers.entries <= 2 * len(s.timers) + 65

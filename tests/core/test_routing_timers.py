from __future__ import annotations

import pytest

from layers import Stack
from layers.errors import ConfigurationError
from layers.links import MemoryLink
from layers.timers import VirtualClock
from layers.wire import ip4


def _stack() -> Stack:
    clock = VirtualClock()
    s = Stack([], clock=clock)
    s.add_interface(MemoryLink("a"), address="10.0.0.2/24")
    s.add_interface(MemoryLink("b"), address="10.1.0.2/16")
    return s


def test_longest_prefix_match_and_default() -> None:
    s = _stack()
    s.add_route("default", gateway="10.0.0.1")
    s.add_route("10.1.5.0/24", gateway="10.1.0.254")
    lookup = s.routes.lookup
    assert lookup(ip4("10.0.0.9")).interface.name == "a"  # type: ignore[union-attr]
    r = lookup(ip4("10.1.5.7"))
    assert r is not None and r.gateway == ip4("10.1.0.254") and r.prefix_length == 24
    r = lookup(ip4("10.1.6.7"))
    assert r is not None and r.gateway is None and r.interface.name == "b"
    r = lookup(ip4("8.8.8.8"))
    assert r is not None and r.prefix_length == 0 and r.next_hop(ip4("8.8.8.8")) == ip4("10.0.0.1")


def test_route_removal_invalidates_cache() -> None:
    s = _stack()
    route = s.routes.add(ip4("10.9.0.0"), 16, s.interfaces[0], gateway=ip4("10.0.0.1"))
    assert s.routes.lookup(ip4("10.9.1.1")) is route
    s.routes.remove(route)
    assert s.routes.lookup(ip4("10.9.1.1")) is None


def test_gateway_must_be_on_a_connected_subnet() -> None:
    s = _stack()
    with pytest.raises(ConfigurationError, match="not on any connected subnet"):
        s.add_route("default", gateway="192.0.2.1")


def test_timers_run_in_order_and_cancel() -> None:
    clock = VirtualClock()
    s = Stack([], clock=clock)
    fired: list[str] = []
    s.call_at(2.0, fired.append, "b")
    s.call_at(1.0, fired.append, "a")
    t = s.call_at(1.5, fired.append, "cancelled")
    s.call_at(2.0, fired.append, "c")
    t.cancel()
    assert s.next_deadline() == 1.0
    clock.advance_to(1.9)
    s.poll()
    assert fired == ["a"]
    clock.advance_to(5)
    s.poll()
    assert fired == ["a", "b", "c"]
    assert s.next_deadline() is None


def test_deadline_change_notifies_runner() -> None:
    clock = VirtualClock()
    s = Stack([], clock=clock)
    seen: list[float] = []
    s.on_deadline_change = seen.append
    s.call_at(5.0, lambda: None)
    s.call_at(7.0, lambda: None)  # later: no notification needed
    s.call_at(3.0, lambda: None)
    assert seen == [5.0, 3.0]


@pytest.mark.internal_errors  # a timer that raises on purpose
def test_timer_exception_is_counted_not_raised() -> None:
    clock = VirtualClock()
    s = Stack([], clock=clock)

    def boom() -> None:
        raise RuntimeError("bug")

    s.call_at(0.0, boom)
    s.poll()
    assert s.counters["stack"].drops["internal_error"] == 1


def test_the_runner_keeps_an_early_loop_timer_and_later_deadlines_still_run() -> None:
    """When the stack's earliest timer is cancelled (a connection ended), the runner leaves
    the loop's timer armed early rather than re-arming it at once; the early wake-up finds
    nothing due, re-arms, and the later timer runs on time."""
    import asyncio

    from layers.runtime import AsyncioRunner

    async def main() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        stack = Stack(["ipv4"], clock=loop.time)
        runner = AsyncioRunner(stack, loop)
        runner.start()
        ran: list[float] = []
        first = stack.call_later(0.01, ran.append, -1.0)
        stack.call_later(0.03, lambda: ran.append(loop.time()))
        handle = runner._timer
        first.cancel()
        runner._rearm()
        kept = runner._timer is handle  # still the early one
        start = loop.time()
        await asyncio.sleep(0.06)
        runner.stop()
        return [t - start for t in ran], kept

    ran, kept = asyncio.run(main())
    assert kept
    assert len(ran) == 1 and 0.0 < ran[0] < 0.06

"""The asyncio runner arms no loop timer for a deadline a burst brings (a call_soon for the
ACK or the data it releases): the poll after the burst runs it, and one re-arm after that
reads the stack's next deadline."""

from __future__ import annotations

import asyncio
from typing import Any

from layers.runtime import AsyncioRunner
from layers.stack import Stack


def test_a_burst_arms_the_loop_once_after_its_poll() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stack = Stack(["ipv4"], clock=loop.time)
        runner = AsyncioRunner(stack, loop)
        runner.start()
        try:
            armed: list[float] = []
            call_at = loop.call_at

            def counting_call_at(when: float, *args: Any) -> asyncio.TimerHandle:
                armed.append(when)
                return call_at(when, *args)

            loop.call_at = counting_call_at  # type: ignore[method-assign, assignment]
            ran: list[str] = []
            later = loop.time() + 5.0

            def burst(receive: Any, iface: Any, budget: int) -> int:
                stack.call_soon(ran.append, "soon")  # due at the burst's poll
                stack.call_at(later, ran.append, "later")
                return 2

            runner._drain_burst(None, burst, stack.receive)  # type: ignore[arg-type]
            assert ran == ["soon"]
            assert armed == [later]  # one loop timer, for what is still to come
            assert runner._armed == later
            # outside a burst a new earlier deadline arms the loop at once, as before
            stack.call_at(later - 1.0, ran.append, "sooner")
            assert armed == [later, later - 1.0]
        finally:
            loop.call_at = call_at  # type: ignore[method-assign]
            runner.stop()

    asyncio.run(main())

"""Runners: the asyncio driver for real links, and helpers to run a stack from a script.

The runner owns the I/O: it reads each link until EAGAIN on one wake-up (a TAP or TUN reads
its frames itself, ``recv_burst``, and after a lone frame a ``poll`` tells it nothing more is
waiting, cheaper than a read that fails), hands frames to the
stack (whose answers, an echo reply or an ACK, are written from the same call), and keeps one
loop timer armed for the stack's next deadline.

**Busy polling** (opt-in, ``busy_poll=`` seconds, ``layers up --busy-poll USEC``), as Linux's
``net.core.busy_poll``/``SO_BUSY_POLL``: after a wake-up has drained a device, the runner keeps
reading it without blocking for up to that long before it goes back to the event loop, and
starts the window again whenever a frame comes. A request that arrives within the window is
taken without a wake-up from the kernel and without a turn of the event loop, which is most
of a ping's round trip beyond the stack's own work; the price is a CPU spinning for up to
``busy_poll`` after every burst (on a TAP or TUN it spins on ``poll(0)``, ``readable()``,
about a fifth of the cost of a read that fails, so it sees a frame sooner). The stack's due
timers still run between bursts, and after ``RX_BUDGET`` frames the runner yields to the loop
as it does without busy polling. The window has to cover the peer's turn-around: ``ping -i
0`` from Linux sends its next request some tens of microseconds after our reply, so 200 us cut
the bench's median round trip by about a quarter on a shared 2-core host where 50 us did
nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from layers.errors import ConfigurationError
from layers.interface import Interface
from layers.links.base import Link
from layers.stack import Stack

#: frames read per link per wake-up before yielding to other work
RX_BUDGET = 256
#: the armed deadline while a burst is taken in: earlier than any, so a deadline the burst
#: brings (a call_soon for the ACK or the data it releases) arms no loop timer of its own,
#: which would be cancelled again by the re-arm after the burst's poll
_DRAINING = float("-inf")
#: the longest busy-poll window accepted (seconds): Linux takes any, but beyond a few
#: milliseconds a spinning runner only burns a CPU
MAX_BUSY_POLL = 0.01


def check_busy_poll(seconds: float) -> None:
    """A ConfigurationError naming the range unless ``seconds`` is a busy-poll window."""
    if not 0.0 <= seconds <= MAX_BUSY_POLL:
        raise ConfigurationError(
            f"busy poll of {seconds * 1e6:g} us is out of range: use 0 (off) to "
            f"{MAX_BUSY_POLL * 1e6:g} us, e.g. --busy-poll 200"
        )


def _burst_reader(recv: Callable[[], tuple[Any, int] | None]) -> Callable[..., int]:
    """A ``recv_burst(deliver, iface, budget)`` for a link that reads one frame per call: up to
    ``budget`` frames handed to ``deliver``; returns how many (fewer: the link ran dry)."""

    def burst(deliver: Callable[[Interface, Any, int], None], iface: Interface,
              budget: int) -> int:
        n = 0
        while n < budget:
            got = recv()
            if got is None:
                break
            deliver(iface, got[0], got[1])
            n += 1
        return n

    return burst


class AsyncioRunner:
    """Runs one stack on an asyncio loop. The stack's clock must be ``loop.time``."""

    def __init__(self, stack: Stack, loop: asyncio.AbstractEventLoop | None = None, *,
                 busy_poll: float = 0.0) -> None:
        """``busy_poll``: seconds to keep reading a drained device before going back to the
        loop (0, the default: never; see the module docstring)."""
        check_busy_poll(busy_poll)
        self.stack = stack
        self.loop = loop or asyncio.get_running_loop()
        self.busy_poll = busy_poll
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._readers: list[int] = []
        self._pending_drain: set[Interface] = set()
        #: each interface's receive call: a TAP/TUN link hands out views of its read buffer
        #: (no copy after the virtio header); the stack copes with views, other links return
        #: bytes from recv()
        self._recv: dict[Interface, Any] = {}
        #: each interface's burst reader, where its link reads and delivers frames itself
        #: (``recv_burst(deliver, iface, budget)``: a TAP/TUN link; one Python call per
        #: wake-up instead of one per frame, and no failed read after a lone frame)
        self._burst: dict[Interface, Any] = {}
        #: the links that may hold frames for later (a link's own ``next_deadline``): a TAP
        #: never does, so the runner does not ask it after every burst
        self._timed_links: list[Link] = []
        self.running = False

    def start(self) -> None:
        stack = self.stack
        if stack.clock != self.loop.time:
            raise RuntimeError("the stack's clock must be the loop's: Stack(clock=loop.time)")
        stack.on_deadline_change = self._deadline_changed
        for iface in stack.interfaces:
            self._attach(iface)
        self.running = True
        stack.start()
        self._rearm()

    def _attach(self, iface: Interface) -> None:
        link = iface.link
        self._recv[iface] = getattr(link, "recv_view", None) or link.recv
        if type(link).next_deadline is not Link.next_deadline and link not in self._timed_links:
            self._timed_links.append(link)
        burst = getattr(link, "recv_burst", None)
        if burst is not None:
            self._burst[iface] = burst
        fd = link.fileno()
        if fd is not None:
            if self.busy_poll:
                self.loop.add_reader(fd, self._busy_drain, iface)
            elif burst is not None:  # the usual TAP: everything the wake-up needs, bound once
                self.loop.add_reader(fd, self._drain_burst, iface, burst, self.stack.receive)
            else:
                self.loop.add_reader(fd, self._drain, iface)
            self._readers.append(fd)
        iface.link.set_wakeup(lambda iface=iface: self._wake(iface))  # type: ignore[misc]

    def add_interface(self, iface: Interface) -> None:
        """Start reading an interface added after :meth:`start`."""
        self._attach(iface)

    def _wake(self, iface: Interface) -> None:
        if iface not in self._pending_drain:
            self._pending_drain.add(iface)
            self.loop.call_soon(self._drain, iface)

    def _drain(self, iface: Interface) -> None:
        self._pending_drain.discard(iface)
        stack = self.stack
        burst = self._burst.get(iface) or _burst_reader(self._recv.get(iface) or iface.link.recv)
        if burst(stack.receive, iface, RX_BUDGET) == RX_BUDGET:
            self._wake(iface)  # more waiting: come back after others had a turn
        stack.poll()
        self._rearm()

    def _drain_burst(self, iface: Interface, burst: Any, receive: Any) -> None:
        """:meth:`_drain` of a link that reads its own bursts, as the loop calls it when the
        descriptor is readable (every ping and every ACK comes through here)."""
        pending = self._pending_drain
        if pending:
            pending.discard(iface)
        armed = self._armed
        self._armed = _DRAINING  # the burst's new deadlines: _rearm reads them after it
        try:
            if burst(receive, iface, RX_BUDGET) == RX_BUDGET:
                self._wake(iface)  # more waiting: come back after others had a turn
            self.stack.poll()
        finally:
            self._armed = armed
        self._rearm()

    def _busy_drain(self, iface: Interface) -> None:
        """:meth:`_drain`, then keep reading for ``busy_poll`` seconds after the last frame
        (the stack's due timers run whenever a burst ends)."""
        self._pending_drain.discard(iface)
        stack = self.stack
        receive = stack.receive
        poll = stack.poll
        clock = time.monotonic
        window = self.busy_poll
        budget = RX_BUDGET
        until = 0.0
        fresh = False  # frames handed to the stack since its last poll
        burst = self._burst.get(iface)
        readable = None
        if burst is not None:
            # a TAP: spin on poll(0) (~1.5k instructions a turn) rather than on reads that
            # fail (~7.8k: BlockingIOError), so a frame is seen sooner after it arrives
            readable = getattr(iface.link, "readable", None)
        else:
            burst = _burst_reader(self._recv.get(iface) or iface.link.recv)
        while True:
            if readable is None or readable():
                got = burst(receive, iface, budget)
                if got:
                    fresh = True
                    budget -= got
                    if not budget:
                        self._wake(iface)  # come back after others had a turn
                        break
                    continue
            if fresh:  # a burst ended: answers and timers first, then a new window
                poll()
                fresh = False
                until = clock() + window
            elif clock() >= until:
                break
        stack.poll()
        self._rearm()

    def _deadline_changed(self, when: float) -> None:
        if self._armed is None or when < self._armed:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _rearm(self) -> None:
        timers = self.stack.timers
        heap = timers._heap
        # next_deadline(), inlined for a live head (it pops cancelled ones first)
        when = heap[0][0] if heap and not heap[0][2].cancelled else timers.next_deadline()
        for link in self._timed_links:
            d = link.next_deadline()
            if d is not None and (when is None or d < when):
                when = d
        if when is None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._armed = None
            return
        armed = self._armed
        if armed is None or when < armed:
            self._arm(when)
        # A later head (the earlier timers were cancelled: connections that ended) keeps the
        # loop's timer armed early; it fires, finds nothing due and re-arms then. Re-arming at
        # once cost a cancelled and a new asyncio timer after every burst that ended a
        # connection whose timer led the heap (under conn_rate, most of them).

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = None
        now = self.loop.time()
        for iface in self.stack.interfaces:
            link = iface.link
            d = link.next_deadline()
            if d is not None and d <= now:
                link.poll(now)
                self._drain_quiet(iface)
        self.stack.poll()
        self._rearm()

    def _drain_quiet(self, iface: Interface) -> None:
        link = iface.link
        for _ in range(RX_BUDGET):
            got = link.recv()
            if got is None:
                return
            self.stack.receive(iface, got[0], got[1])

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        for fd in self._readers:
            self.loop.remove_reader(fd)
        self._readers.clear()
        if self._timer is not None:
            self._timer.cancel()
        self.stack.on_deadline_change = None
        self.stack.stop()


@contextlib.asynccontextmanager
async def running_stack(
    links: Iterable[tuple[str, str | None]] | None = None,
    *,
    plugins: Sequence[str | ModuleType | object] | None = None,
    gateway: str | None = None,
    settings: dict[str, Any] | None = None,
    **link_options: Any,
) -> AsyncIterator[Stack]:
    """Compose a stack, attach ``[(link_spec, "a.b.c.d/n"), ...]``, run it, stop it after.

    ::

        async with running_stack([("tap:tap0", "10.0.0.2/24")], gateway="10.0.0.1") as stack:
            ...
    """
    loop = asyncio.get_running_loop()
    stack = Stack(plugins, clock=loop.time, settings=settings)
    try:
        for spec, address in links or ():
            stack.add_interface(spec, address=address, **link_options)
        if gateway is not None:
            stack.add_route("default", gateway=gateway)
        runner = AsyncioRunner(stack, loop)
        runner.start()
    except BaseException:
        stack.stop()
        raise
    try:
        yield stack
    finally:
        runner.stop()

"""Deterministic runs of several stacks joined by in-memory links, on a virtual clock.

::

    net = VirtualNetwork()
    a = net.stack(["arp", "ipv4", "icmp"], address="10.0.0.1/24")
    b = net.stack(["arp", "ipv4", "icmp"], address="10.0.0.2/24")   # joined to a
    net.run_for(5.0)                       # five virtual seconds, microseconds of real time

Time only moves to the next event (a frame arrival or a timer), so RTO backoff and TIME-WAIT
cost nothing to wait for, and every run of a test sees the same interleaving.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from layers.errors import ConfigurationError
from layers.interface import Interface
from layers.links.base import Link, Medium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock

#: no deadline: later than any
_NEVER = float("inf")


class _Source:
    """One thing the loop waits for, a stack's timers or a link of a node: ``due`` is its
    deadline when last read (infinity for none), never later than the real one unless
    ``dirty`` (the source said it came earlier since, and will be read again)."""

    __slots__ = ("deadline", "dirty", "due", "link", "net", "trusted")

    def __init__(self, net: VirtualNetwork, deadline: Callable[[], float | None],
                 link: Link | None, trusted: bool) -> None:
        self.net = net
        self.deadline = deadline
        self.link = link
        self.trusted = trusted
        self.due = _NEVER
        self.dirty = True

    def trust(self, trusted: bool) -> None:
        self.trusted = trusted
        self.dirty = True

    def wake(self, *_: object) -> None:
        """The source may have moved: read it before it is next relied on."""
        if not self.dirty:
            self.dirty = True
            self.net._woken.append(self)

    def read(self) -> float:
        d = self.deadline()
        self.due = d = _NEVER if d is None else d
        self.dirty = not self.trusted  # one that cannot tell is read whenever relied on
        return d


def _notifies(link: Link) -> bool:
    """``link`` and every link it wraps declare that they call their wakeup whenever their
    next deadline comes earlier (a subclass must say so again: it may hold frames)."""
    while True:
        if not vars(type(link)).get("notifies_deadline", False):
            return False
        inner = getattr(link, "inner", None)
        if inner is None:
            return True
        link = inner


def _take_wakeup(link: Link, src: _Source) -> bool:
    """Have ``link`` wake ``src``; False when someone else already listens to it."""
    current = getattr(link, "_wakeup", None)
    if current is not None and getattr(current, "__func__", None) is not _Source.wake:
        return False
    link.set_wakeup(src.wake)
    return True


class _NodeSources:
    """A node's sources: its timers, and one per interface (with the interface)."""

    __slots__ = ("links", "sources", "stack", "timers")

    def __init__(self, net: VirtualNetwork, stack: Any) -> None:
        self.stack = stack
        if isinstance(stack, Stack) and type(stack).next_deadline is Stack.next_deadline:
            listener = stack.on_deadline_change
            trusted = listener is None or getattr(listener, "__func__", None) is _Source.wake
            self.timers = _Source(net, stack.timers.next_deadline, None, trusted)
            if trusted:
                stack.on_deadline_change = self.timers.wake
        else:  # a node like a stack (an experiment's wire): read at every step unless it
            # declares that its next_deadline never comes earlier behind the loop's back
            self.timers = _Source(net, stack.next_deadline, None,
                                  bool(getattr(type(stack), "notifies_deadline", False)))
        self.links: list[tuple[Any, _Source]] = []
        for iface in stack.interfaces:
            link = iface.link
            src = _Source(net, link.next_deadline, link, False)
            src.trust(_notifies(link) and _take_wakeup(link, src))
            self.links.append((iface, src))
        self.sources = [src for _, src in self.links] + [self.timers]


_DUE = operator.attrgetter("due")

#: ``on_frame(now, frame)`` for the frames arriving at a link end the test holds itself
EndpointHandler = Callable[[float, bytes], None]


class VirtualNetwork:
    """Stacks (and link ends held by the test itself, such as the conformance testbench's) on
    one virtual clock. This is the project's one virtual-time loop: :meth:`step` and
    :meth:`settle` deliver frames and run timers; the ``run_*`` methods and the conformance
    suite's virtual medium wait on top of them."""

    def __init__(self, start: float = 0.0, *, clock: VirtualClock | None = None) -> None:
        self.clock = clock if clock is not None else VirtualClock(start)
        self.stacks: list[Stack] = []
        #: link ends no stack owns, and who gets their frames
        self.endpoints: list[tuple[Link, EndpointHandler]] = []
        self._pending_link: MemoryLink | None = None
        #: what :meth:`_nodes` was built from, and what it built
        self._nodes_of: list[Stack] = []
        self._node_list: list[_NodeSources] = []
        #: every source of every node, in the order the loop visits them; those it reads at
        #: every step; those that said they moved since the loop last read them
        self._sources: list[_Source] = []
        self._untrusted: list[_Source] = []
        self._woken: list[_Source] = []
        self.steps = 0

    def add_endpoint(self, link: Link, on_frame: EndpointHandler) -> None:
        """Drive ``link``, one end of a link whose other end a stack holds, for the test: it
        runs on this clock, and each frame arriving at it goes to ``on_frame(now, frame)``."""
        link.attach(self.clock)
        self.endpoints.append((link, on_frame))

    @property
    def now(self) -> float:
        return self.clock.time

    def new_stack(
        self,
        plugins: Sequence[str | ModuleType | object] | None = None,
        *,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Stack:
        """A stack on this network's clock, with no interface yet."""
        stack = Stack(
            plugins,
            clock=self.clock,
            settings=settings,
            name=name or f"stack{len(self.stacks) + 1}",
        )
        self.stacks.append(stack)
        return stack

    def link(
        self,
        a: Stack,
        b: Stack,
        *,
        addresses: tuple[str | None, str | None] = (None, None),
        latency: float = 0.0,
        mtu: int = 1500,
        medium: Medium = Medium.ETHERNET,
        wrap: Callable[[Link], Link] | None = None,
        faults: str | Mapping[str, Any] | None = None,
        checksum_offload: bool = False,
    ) -> tuple[Interface, Interface]:
        """Join two stacks with a memory link pair; ``wrap`` wraps each end (pcap, ...).

        ``checksum_offload=True`` lets transports leave checksums partial on this link and the
        receiving stack trust them, as across a veth pair (:mod:`layers.links.memory`): the
        simulation then does no checksum work for TCP and UDP. Off by default, so that what
        crosses carries real checksums.

        ``faults`` (``"loss=2%,delay=10ms,seed=7"`` or :class:`~layers.links.faults.FaultLink`
        keywords) are faults *of this link*: every frame that crosses it, either way, meets
        them once (each end injects into the frames it sends; the two ends draw from different
        seeds). A FaultLink with ``direction="both"`` put on both ends through ``wrap`` would
        meet every frame twice (2% loss becoming about 4%)."""
        n = len(a.interfaces), len(b.interfaces)
        la, lb = MemoryLink.pair(
            (f"mem{n[0]}", f"mem{n[1]}"), mtu=mtu, medium=medium, latency=latency,
            checksum_offload=checksum_offload,
        )
        ends: list[Link] = [wrap(la) if wrap else la, wrap(lb) if wrap else lb]
        if faults is not None:
            from layers.links.faults import FaultLink, parse_faults

            options = dict(parse_faults(faults) if isinstance(faults, str) else faults)
            if options.pop("direction", "tx") != "tx":
                raise ConfigurationError(
                    "faults of a link apply once per frame, as it is sent; leave out dir= "
                    "(wrap= takes a FaultLink with a direction of your choice)"
                )
            seed = options.pop("seed", None)
            if seed is None:
                seed = int.from_bytes(os.urandom(4), "big")
            ends = [FaultLink(end, direction="tx", seed=seed + i, **options)
                    for i, end in enumerate(ends)]
        ia = a.add_interface(ends[0], address=addresses[0])
        ib = b.add_interface(ends[1], address=addresses[1])
        return ia, ib

    def bottleneck(self, a: Stack, b: Stack, shape: Any, **options: Any) -> Any:
        """Join ``a`` and ``b`` through a bottleneck (rate, delay, queue discipline): see
        :func:`layers.links.shaper.bottleneck`, which this calls with ``self``."""
        from layers.links.shaper import bottleneck

        return bottleneck(self, a, b, shape, **options)

    def pair(
        self,
        plugins: Sequence[str | ModuleType | object] | None = None,
        *,
        addresses: tuple[str, str] = ("10.0.0.1/24", "10.0.0.2/24"),
        start: bool = True,
        **link_options: Any,
    ) -> tuple[Stack, Stack]:
        """Two stacks of the same plugins joined by one link: the common test set-up."""
        a = self.new_stack(plugins, settings=link_options.pop("settings", None))
        b = self.new_stack(plugins, settings=a.settings)
        self.link(a, b, addresses=addresses, **link_options)
        if start:
            a.start()
            b.start()
        return a, b

    # --- running ----------------------------------------------------------------------
    #
    # The loop keeps each source's deadline (a stack's timers, a link of a node) as last read,
    # and reads again only the sources that may have come earlier: one that told it so (a
    # link's wakeup when a frame was sent to it or it holds one for later, a stack's
    # on_deadline_change) and one it has just drained or polled. A kept deadline can be too
    # early (a timer cancelled behind its back), never too late, so the earliest is read
    # again before the clock moves to it, and a source due now before it is handled. A source
    # that cannot tell (a link class that does not declare ``notifies_deadline``, or a node
    # that is not a Stack and does not declare it) is read whenever it is relied on. Whenever
    # code other than the loop's may have run (each public method's start, after
    # run_until_true's condition), every source is read again. The loop thus does exactly
    # what reading every deadline at every step would, in the same order, without the reading.

    def _sync(self) -> None:
        """Read every source again (rebuilding the list if stacks or links changed)."""
        if not self._structure_current():
            self._rebuild()
        for src in self._sources:
            src.read()
        self._woken.clear()

    def _structure_current(self) -> bool:
        if self._nodes_of != self.stacks:
            return False
        for node in self._node_list:
            interfaces = node.stack.interfaces
            if len(interfaces) != len(node.links):
                return False
            for iface, src in node.links:
                if iface.link is not src.link:
                    return False
        return True

    def _rebuild(self) -> None:
        self._nodes_of = list(self.stacks)
        self._node_list = [_NodeSources(self, s) for s in self._nodes_of]
        self._sources = [src for n in self._node_list for src in n.sources]
        self._untrusted = [src for src in self._sources if not src.trusted]

    def _next(self) -> float | None:
        """:meth:`next_event` from the kept deadlines (the loop's own, between passes)."""
        if self._nodes_of != self.stacks:
            self._sync()
        woken = self._woken
        if woken:
            for src in woken:
                if src.dirty:  # read(), inlined
                    d = src.deadline()
                    src.due = _NEVER if d is None else d
                    src.dirty = not src.trusted
            woken.clear()
        for src in self._untrusted:
            src.read()
        best = _NEVER
        sources = self._sources
        while sources:
            first = min(sources, key=_DUE)
            best = first.due
            if best == _NEVER:
                break
            if first.read() == best:  # a kept deadline is never later than the real one
                break
        for link, _ in self.endpoints:
            d = link.next_deadline()
            if d is not None and d < best:
                best = d
        return None if best == _NEVER else best

    def next_event(self) -> float | None:
        """When something is next due: a timer of a stack, or a frame on one of the links."""
        self._sync()
        return self._next()

    def _pass(self, now: float, *, poll_all: bool) -> bool:
        """Deliver the frames due at ``now`` and run the due timers, once; True if anything
        happened."""
        moved = False
        for node in self._node_list:
            stack = node.stack
            for iface, src in node.links:
                if src.dirty:
                    src.read()
                if src.due > now:
                    continue
                link = iface.link
                d = link.next_deadline()
                if d is None or d > now:
                    src.due = _NEVER if d is None else d
                    continue
                if type(link) is MemoryLink:  # nothing to poll; recv() until None, in one
                    if link.deliver_due(now, stack.receive, iface):
                        moved = True
                else:
                    link.poll(now)
                    receive = stack.receive
                    while (got := link.recv()) is not None:
                        moved = True
                        receive(iface, got[0], got[1])
                src.read()  # it moved on (what the node did since told if it came earlier)
            timers = node.timers
            if timers.dirty:
                timers.read()
            if timers.due <= now:
                # a stack with nothing due is not polled: that would only find its first
                # timer later than now (``poll_all`` polls without counting it as a move)
                d = timers.deadline()
                if d is not None and d <= now:
                    if not poll_all:
                        moved = True
                    stack.poll()
                    timers.read()
                else:
                    timers.due = _NEVER if d is None else d
        for link, on_frame in self.endpoints:
            d = link.next_deadline()
            if d is not None and d <= now:
                link.poll(now)
            while (got := link.recv()) is not None:
                moved = True
                on_frame(now, got[0])
        return moved

    def step(self) -> bool:
        """Advance to the next event and process everything due then. False when idle."""
        when = self.next_event()
        if when is None:
            return False
        self._step_at(when)
        return True

    def _step_at(self, when: float) -> None:
        """:meth:`step` to ``when``, the next event the caller has just read (the loops below
        read it once per step, not twice)."""
        self.clock.advance_to(when)
        self.steps += 1
        self._pass(self.clock.time, poll_all=True)

    def settle(self, max_passes: int = 10_000) -> None:
        """Process everything due at the current time, including what that sets off at the
        same time (a frame answered at once), without moving the clock."""
        self._sync()
        for _ in range(max_passes):
            if not self._pass(self.clock.time, poll_all=False):
                return
        raise RuntimeError("the virtual world did not settle: an endless burst of zero-time events")

    def run_until(self, when: float) -> None:
        """Process every event up to virtual time ``when``, then set the clock to it."""
        self._sync()
        while True:
            nxt = self._next()
            if nxt is None or nxt > when:
                break
            self._step_at(nxt)
        self.clock.advance_to(when)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.time + seconds)

    def run_until_true(
        self, condition: Callable[[], bool], timeout: float = 60.0, max_steps: int = 10_000_000
    ) -> bool:
        """Step until ``condition()`` holds (True) or ``timeout`` virtual seconds pass (False)."""
        deadline = self.clock.time + timeout
        for _ in range(max_steps):
            if condition():
                return True
            nxt = self.next_event()
            if nxt is None or nxt > deadline:
                self.clock.advance_to(deadline)
                return condition()
            self._step_at(nxt)
        return condition()

    def run_until_idle(self, timeout: float = 3600.0) -> None:
        self.run_until_true(lambda: self.next_event() is None, timeout)

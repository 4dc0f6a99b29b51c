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

#: (a stack or a node like one, its timers' next deadline, its interfaces)
_Node = tuple[Any, Callable[[], float | None], list[Interface]]

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
        self._node_list: list[_Node] = []
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
    def _nodes(self) -> list[_Node]:
        """The stacks (and duck-typed nodes such as an experiment's wires) as the loop reads
        them: (node, its timers' next deadline, its interfaces). Rebuilt when ``stacks`` was
        changed (a list compared by identity first, in C)."""
        stacks = self.stacks
        if self._nodes_of != stacks:
            self._nodes_of = list(stacks)
            self._node_list = [
                (s, s.timers.next_deadline if type(s).next_deadline is Stack.next_deadline
                 else s.next_deadline, s.interfaces)
                for s in stacks
            ]
        return self._node_list

    def next_event(self) -> float | None:
        """When something is next due: a timer of a stack, or a frame on one of the links."""
        best = _NEVER
        for link, _ in self.endpoints:
            d = link.next_deadline()
            if d is not None and d < best:
                best = d
        for _, deadline, interfaces in self._nodes():
            d = deadline()
            if d is not None and d < best:
                best = d
            for iface in interfaces:
                link = iface.link
                if type(link) is MemoryLink:  # next_deadline(), inlined: most links are
                    inbox = link._inbox
                    if inbox and inbox[0][0] < best:
                        best = inbox[0][0]
                    continue
                d = link.next_deadline()
                if d is not None and d < best:
                    best = d
        return None if best is _NEVER else best

    def _pass(self, now: float, *, poll_all: bool) -> bool:
        """Deliver the frames due at ``now`` and run the due timers, once; True if anything
        happened."""
        moved = False
        for stack, deadline, interfaces in self._nodes():
            for iface in interfaces:
                link = iface.link
                if type(link) is MemoryLink:  # nothing to poll; next_deadline(), inlined
                    inbox = link._inbox
                    if not inbox or inbox[0][0] > now:
                        continue
                else:
                    d = link.next_deadline()
                    if d is None or d > now:
                        continue
                    link.poll(now)
                receive = stack.receive
                while (got := link.recv()) is not None:
                    moved = True
                    receive(iface, got[0], got[1])
            # a stack with nothing due is not polled: that would only find its first timer
            # later than now (``poll_all`` polls stacks without counting it as a move)
            d = deadline()
            if d is not None and d <= now:
                if not poll_all:
                    moved = True
                stack.poll()
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
        """:meth:`step` to ``when``, the :meth:`next_event` the caller has just read (the
        loops below read it once per step, not twice)."""
        self.clock.advance_to(when)
        self.steps += 1
        self._pass(self.clock.time, poll_all=True)

    def settle(self, max_passes: int = 10_000) -> None:
        """Process everything due at the current time, including what that sets off at the
        same time (a frame answered at once), without moving the clock."""
        for _ in range(max_passes):
            if not self._pass(self.clock.time, poll_all=False):
                return
        raise RuntimeError("the virtual world did not settle: an endless burst of zero-time events")

    def run_until(self, when: float) -> None:
        """Process every event up to virtual time ``when``, then set the clock to it."""
        while True:
            nxt = self.next_event()
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

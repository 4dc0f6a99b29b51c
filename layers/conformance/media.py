"""The testbench's side of the link, and the clock it waits on.

A :class:`Medium` sends raw Ethernet frames to the DUT, keeps every frame the DUT sent in an
inbox stamped with its arrival time, and waits for conditions. Two kinds:

* :class:`VirtualMedium`: one end of a :class:`~layers.links.memory.MemoryLink` pair whose other
  end belongs to a stack on a :class:`~layers.timers.VirtualClock`. Waiting *drives* that world:
  it delivers frames and runs the stack's timers event by event, so a test that waits 60 seconds
  of TIME-WAIT costs microseconds and every run sees the same interleaving.
* :class:`TapMedium`: the descriptor of a TAP device in a namespace. A reader thread moves
  frames to the inbox as they come (so ARP is answered while the test waits on something else);
  waiting is real waiting.

Both call ``on_frame`` for each arriving frame before the test sees it (the testbench answers
ARP there).
"""

from __future__ import annotations

import os
import select
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import attrs

from layers.links.base import Link
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork


@attrs.define
class Captured:
    """One frame the DUT sent, with the testbench time it arrived."""

    time: float
    raw: bytes
    index: int


FrameHook = Callable[[bytes], None]


class Medium(ABC):
    def __init__(self) -> None:
        self.inbox: list[Captured] = []
        self.on_frame: FrameHook | None = None

    @abstractmethod
    def now(self) -> float:
        """The testbench clock (seconds)."""

    @abstractmethod
    def send(self, frame: bytes) -> None:
        """Put one frame on the wire toward the DUT."""

    @abstractmethod
    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""

    def sleep(self, seconds: float) -> None:
        self.wait(lambda: False, seconds)

    @property
    def virtual(self) -> bool:
        return False

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def reset(self) -> None:
        """Forget every frame received so far (a new test starts)."""
        self.inbox.clear()
        self.on_frame = None

    def _arrived(self, when: float, frame: bytes) -> None:
        hook = self.on_frame
        if hook is not None:
            hook(frame)
        self.inbox.append(Captured(when, frame, len(self.inbox)))


class VirtualMedium(Medium):
    """The testbench end of a memory link to ``stack``, all on ``clock``. The stacks and the
    testbench's link run on a :class:`~layers.virtual.VirtualNetwork` (the one virtual-time
    loop); waiting settles it and moves its clock from event to event."""

    def __init__(self, clock: VirtualClock, tb_link: Link, max_events: int = 2_000_000) -> None:
        super().__init__()
        self.net = VirtualNetwork(clock=clock)
        self.link = tb_link
        self.net.add_endpoint(tb_link, self._arrived)
        self.max_events = max_events

    @property
    def clock(self) -> VirtualClock:
        return self.net.clock

    @property
    def stacks(self) -> list[Stack]:
        return self.net.stacks

    @property
    def virtual(self) -> bool:
        return True

    def now(self) -> float:
        return self.clock.time

    def send(self, frame: bytes) -> None:
        self.link.send(frame)

    def settle(self) -> None:
        """Process everything due at the current time (frames both ways, timers)."""
        self.net.settle()

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = self.clock.time + max(timeout, 0.0)
        for _ in range(self.max_events):
            self.net.settle()
            if condition():
                return True
            nxt = self.net.next_event()
            if nxt is None or nxt > deadline:
                self.clock.advance_to(deadline)
                self.net.settle()
                return condition()
            self.clock.advance_to(nxt)
        raise RuntimeError(f"more than {self.max_events} events in one wait")


class TapMedium(Medium):
    """A TAP descriptor (no virtio header) read by a thread into the inbox, in real time."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        fd = link.fileno()
        if fd is None:
            raise ValueError("TapMedium needs a link with a descriptor")
        self._fd = fd
        self._cond = threading.Condition()
        self._stop_r, self._stop_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._reader, name="testbench-reader", daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.monotonic()

    def send(self, frame: bytes) -> None:
        self.link.send(frame)

    def _reader(self) -> None:
        while True:
            r, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in r:
                return
            while True:
                try:
                    got = self.link.recv()
                except OSError:
                    got = None
                if got is None:
                    break
                with self._cond:
                    self._arrived(time.monotonic(), got[0])
                    self._cond.notify_all()

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(condition, timeout=max(timeout, 0.0))

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))

    def reset(self) -> None:
        with self._cond:
            super().reset()

    def notify(self) -> None:
        """Wake waiters (something other than a frame changed)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_r)
        os.close(self._stop_w)
        self.link.close()

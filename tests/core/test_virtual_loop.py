"""The virtual-time loop reads a source's deadline again only when it may have come earlier:
a frame a stack sends from another stack's callback (no pass touches the sender) must still
leave a link that held it at the exact instant, whether the link says it moved (FaultLink's
wakeup) or is of a class that does not declare ``notifies_deadline`` (read at every step)."""

from __future__ import annotations

from typing import Any

from layers.links.base import Link, LinkWrapper, Medium, TxOffload
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.virtual import VirtualNetwork

FRAME = b"\x45" + bytes(39)


class Holding(LinkWrapper):
    """Holds every sent frame for 5 ms and never calls its wakeup (it does not declare
    ``notifies_deadline``)."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.held: list[tuple[float, bytes]] = []

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        assert self._clock is not None
        self.held.append((self._clock() + 0.005, bytes(frame)))

    def next_deadline(self) -> float | None:
        inner = self.inner.next_deadline()
        mine = self.held[0][0] if self.held else None
        if mine is None or (inner is not None and inner < mine):
            return inner
        return mine

    def poll(self, now: float) -> None:
        while self.held and self.held[0][0] <= now:
            self.inner.send(self.held.pop(0)[1])


def _pair(wrap: Any) -> tuple[VirtualNetwork, Stack, Stack, list[float]]:
    net = VirtualNetwork()
    a, b = net.new_stack([]), net.new_stack([])
    la, lb = MemoryLink.pair(medium=Medium.IP)
    a.add_interface(wrap(la))
    b.add_interface(lb)
    a.start()
    b.start()
    arrivals: list[float] = []
    receive = b.receive

    def record(iface: Any, frame: Any, flags: int = 0) -> None:
        arrivals.append(net.now)
        receive(iface, frame, flags)

    b.receive = record  # type: ignore[method-assign]
    # b's timer makes a send: a does nothing in any pass before its link is due
    b.call_at(1.0, lambda: a.interfaces[0].link.send(FRAME))
    b.call_at(1.5, lambda: None)  # something else to step to
    return net, a, b, arrivals


def test_a_held_frame_sent_from_another_stack_leaves_on_time() -> None:
    net, _, _, arrivals = _pair(lambda link: FaultLink(link, delay=0.010, direction="tx", seed=1))
    net.run_until(2.0)
    assert arrivals == [1.010]


def test_a_link_that_does_not_say_when_it_moves_is_read_at_every_step() -> None:
    net, _, _, arrivals = _pair(Holding)
    net.run_until(2.0)
    assert arrivals == [1.005]
    assert net.steps == 3  # 1.0 (the send); 1.005 (released, and b after a gets it); 1.5

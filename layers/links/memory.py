"""An in-memory link pair: two stacks joined with no device and no root.

Frames sent on one end arrive at the other after ``latency`` seconds of the attached clock
(virtual or real). Used by the virtual-clock tests, the rootless demo and experiments.
"""

from __future__ import annotations

import os
from collections import deque

from layers.links.base import Link, LinkCapabilities, Medium, TxOffload
from layers.wire.ethernet import ETH_HLEN


class MemoryLink(Link):
    def __init__(
        self,
        name: str = "mem0",
        *,
        mtu: int = 1500,
        medium: Medium = Medium.ETHERNET,
        mac: bytes | None = None,
        latency: float = 0.0,
        queue_limit: int = 4096,
    ) -> None:
        super().__init__()
        self.name = name
        self.capabilities = LinkCapabilities(medium=medium, mtu=mtu)
        if medium is Medium.ETHERNET:
            # locally administered unicast address
            self.mac = mac or bytes([0x02]) + os.urandom(5)
        self.latency = latency
        self.queue_limit = queue_limit
        self.peer: MemoryLink | None = None
        self._inbox: deque[tuple[float, bytes]] = deque()
        self._max_frame = mtu + (ETH_HLEN if medium is Medium.ETHERNET else 0)

    @classmethod
    def pair(
        cls,
        names: tuple[str, str] = ("mem0", "mem1"),
        *,
        mtu: int = 1500,
        medium: Medium = Medium.ETHERNET,
        latency: float = 0.0,
    ) -> tuple[MemoryLink, MemoryLink]:
        a = cls(names[0], mtu=mtu, medium=medium, latency=latency)
        b = cls(names[1], mtu=mtu, medium=medium, latency=latency)
        a.peer, b.peer = b, a
        return a, b

    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        peer = self.peer
        n = len(frame)
        if peer is None or n > self._max_frame or len(peer._inbox) >= peer.queue_limit:
            self.stats.tx_dropped += 1
            return
        self.stats.tx_frames += 1
        self.stats.tx_bytes += n
        peer._inbox.append((self._now() + self.latency, bytes(frame)))
        if peer._wakeup is not None:
            peer._wakeup()

    def recv(self) -> tuple[bytes, int] | None:
        inbox = self._inbox
        if not inbox or inbox[0][0] > self._now():
            return None
        _, frame = inbox.popleft()
        self.stats.rx_frames += 1
        self.stats.rx_bytes += len(frame)
        return frame, 0

    def next_deadline(self) -> float | None:
        return self._inbox[0][0] if self._inbox else None

    def close(self) -> None:
        self._inbox.clear()
        if self.peer is not None:
            self.peer.peer = None
            self.peer = None
